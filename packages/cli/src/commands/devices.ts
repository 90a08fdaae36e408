import type { Command } from 'commander';
import { addServerOptions, clientFor, type DeviceInfo, table, wantsJson, when } from '../api-client.js';
import { CliError } from '../errors.js';
import { printResult } from '../output.js';
import { countArg, timeArg } from '../time-arg.js';

const MAX_PAGE = 1000;

const version = (d: DeviceInfo) => d.currentVersion ?? d.version ?? null;

function renderDevice(d: DeviceInfo): string {
  const skip = new Set(['id']);
  const lines = [`device ${d.id}`];
  for (const [k, v] of Object.entries(d)) {
    if (skip.has(k) || v === undefined) continue;
    const text =
      v === null
        ? '–'
        : typeof v === 'object'
          ? JSON.stringify(v)
          : k === 'lastSeen' || k === 'created'
            ? when(v as string | number)
            : String(v);
    lines.push(`  ${k}: ${text}`);
  }
  return lines.join('\n');
}

/** `flotilla devices list|show|history|accept`: the fleet as the server sees it. */
export function registerDevicesCommands(program: Command): void {
  addServerOptions(program);
  const devices = program
    .command('devices')
    .description("list, inspect and accept devices, and read a device's history");

  devices
    .command('list')
    .description('list devices')
    .option('--status <status>', 'only devices in this state (e.g. pending, accepted)')
    .option('--hardware <id>', 'only this hardware')
    .option('--version <version>', 'only devices running this version')
    .option('--tag <tag>', 'only devices with this tag')
    .option('--group <group>', 'only devices in this group')
    .option('--channel <name>', 'only devices following this channel (dev, staging, prod)')
    .option('--online', 'only devices connected now')
    .option('--offline', 'only devices not connected now')
    .option('--limit <n>', 'at most this many (1–1000)', '200')
    .option('--offset <n>', 'skip this many (the next page)')
    .option('--json', 'print JSON')
    .action(async (o: Record<string, string | boolean | undefined>, cmd: Command) => {
      if (o.online && o.offline) throw new CliError('FLOTILLA_ERR_CLI_USAGE', '--online with --offline');
      const text = (k: string) => (typeof o[k] === 'string' ? (o[k] as string) : undefined);
      const offset = text('offset');
      const { items, total } = await clientFor(cmd).listDevices({
        status: text('status'),
        hardware: text('hardware'),
        version: text('version'),
        tag: text('tag'),
        group: text('group'),
        channel: text('channel'),
        online: o.online ? 'true' : o.offline ? 'false' : undefined,
        limit: countArg('--limit', text('limit') ?? '200', MAX_PAGE),
        offset: offset === undefined ? undefined : countArg('--offset', offset, Number.MAX_SAFE_INTEGER),
      });
      printResult(wantsJson(cmd), { ok: true, devices: items, total: total ?? items.length }, () =>
        items.length === 0
          ? 'no devices'
          : [
              table(
                ['ID', 'STATUS', 'HARDWARE', 'VERSION', 'ONLINE', 'LAST SEEN', 'TAGS'],
                items.map((d) => [
                  d.id,
                  d.status,
                  d.hardware,
                  version(d),
                  d.online === undefined ? null : d.online ? 'yes' : 'no',
                  when(d.lastSeen),
                  (d.tags ?? []).join(','),
                ]),
              ),
              total !== undefined && total > items.length ? `(${items.length} of ${total} shown)` : null,
            ]
              .filter(Boolean)
              .join('\n'),
      );
    });

  devices
    .command('show')
    .description('show one device')
    .argument('<id>', 'device id')
    .option('--json', 'print JSON')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const d = await clientFor(cmd).getDevice(id);
      printResult(wantsJson(cmd), { ok: true, device: d }, () => renderDevice(d));
    });

  devices
    .command('history')
    .description("the device's timeline, newest first: its reports, deployments and audit entries about it")
    .argument('<id>', 'device id')
    .option(
      '--until <time>',
      'only before this time: ISO 8601 or ago (30m, 12h, 7d); the next page: the oldest time shown',
    )
    .option('--limit <n>', 'at most this many (1–1000)', '100')
    .option('--json', 'print JSON: {"ok","deviceId","history":[{ts,source,kind,summary,ref,detail}]}')
    .action(async (id: string, o: { until?: string; limit: string }, cmd: Command) => {
      const { items } = await clientFor(cmd).deviceHistory(id, {
        until: o.until === undefined ? undefined : timeArg('--until', o.until),
        limit: countArg('--limit', o.limit, MAX_PAGE),
      });
      printResult(wantsJson(cmd), { ok: true, deviceId: id, history: items }, () =>
        items.length === 0
          ? `no history for device ${id}`
          : table(
              ['TIME', 'SOURCE', 'WHAT', 'SUMMARY'],
              items.map((e) => [when(e.ts), e.source, e.kind, e.summary]),
            ),
      );
    });

  devices
    .command('accept')
    .description('accept a device that asked to join (it may then connect and get updates)')
    .argument('<id>', 'device id')
    .option('--json', 'print JSON')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const d = await clientFor(cmd).acceptDevice(id);
      printResult(wantsJson(cmd), { ok: true, device: d }, () => `accepted ${renderDevice(d)}`);
    });
}
