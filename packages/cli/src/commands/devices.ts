import type { Command } from 'commander';
import { addServerOptions, clientFor, type DeviceInfo, table, wantsJson, when } from '../api-client.js';
import { CliError } from '../errors.js';
import { printResult } from '../output.js';

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

/** `flotilla devices list|show|accept`: the fleet as the server sees it. */
export function registerDevicesCommands(program: Command): void {
  addServerOptions(program);
  const devices = program.command('devices').description('list, inspect and accept devices');

  devices
    .command('list')
    .description('list devices')
    .option('--status <status>', 'only devices in this state (e.g. pending, accepted)')
    .option('--hardware <id>', 'only this hardware')
    .option('--version <version>', 'only devices running this version')
    .option('--tag <tag>', 'only devices with this tag')
    .option('--limit <n>', 'at most this many', '200')
    .option('--json', 'print JSON')
    .action(async (o: Record<string, string | undefined>, cmd: Command) => {
      const limit = Number(o.limit);
      if (!Number.isInteger(limit) || limit < 1)
        throw new CliError('FLOTILLA_ERR_CLI_USAGE', `--limit ${o.limit}`);
      const { items, total } = await clientFor(cmd).listDevices({
        status: o.status,
        hardware: o.hardware,
        version: o.version,
        tag: o.tag,
        limit,
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
    .command('accept')
    .description('accept a device that asked to join (it may then connect and get updates)')
    .argument('<id>', 'device id')
    .option('--json', 'print JSON')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const d = await clientFor(cmd).acceptDevice(id);
      printResult(wantsJson(cmd), { ok: true, device: d }, () => `accepted ${renderDevice(d)}`);
    });
}
