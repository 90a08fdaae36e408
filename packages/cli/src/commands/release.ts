import { checkReleaseVersion } from '@flotilla/protocol';
import type { Command } from 'commander';
import { addServerOptions, clientFor, type ReleaseInfo, table, wantsJson, when } from '../api-client.js';
import { CliError } from '../errors.js';
import { printResult } from '../output.js';
import { printReleaseVulns } from './vulns.js';

/** The server's channels in promotion order; a new release lands in the first. */
const CHANNELS = ['dev', 'staging', 'prod'];

function channelIndex(name: string): number {
  const i = CHANNELS.indexOf(name);
  if (i < 0) throw new CliError('FLOTILLA_ERR_CLI_USAGE', `--channel ${name} (dev, staging or prod)`);
  return i;
}

function size(n: number | undefined): string | null {
  if (n === undefined) return null;
  return n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`;
}

function renderRelease(r: ReleaseInfo): string {
  return [
    `release ${r.version}${r.name ? ` (${r.name})` : ''}${r.kind && r.kind !== 'release' ? ` [${r.kind}]` : ''}`,
    `  channels: ${(r.channels ?? []).join(', ') || '–'}`,
    `  hardware: ${(r.compatible ?? []).join(', ') || '–'}`,
    r.image ? `  image: ${r.image.sha256} ${size(r.image.size)}` : null,
  ]
    .filter((l): l is string => l !== null)
    .join('\n');
}

/** `flotilla release create|list|show|promote|vulns`: signed releases on the server and their channels. */
export function registerReleaseCommands(program: Command): void {
  addServerOptions(program);
  const release = program.command('release').description('upload, list, show and promote releases');

  release
    .command('create')
    .description('upload a signed release bundle (.flot); the server verifies it before storing')
    .argument('<bundle>', 'bundle file')
    .option('--channel <name>', 'then promote it, one channel at a time, up to this one (staging, prod)')
    .option('--json', 'print JSON')
    .action(async (bundle: string, o: { channel?: string }, cmd: Command) => {
      const upTo = o.channel === undefined ? 0 : channelIndex(o.channel);
      const client = clientFor(cmd);
      let r = await client.createRelease(bundle);
      for (const channel of CHANNELS.slice(1, upTo + 1))
        if (!(r.channels ?? []).includes(channel)) r = await client.promoteRelease(r.version, channel);
      printResult(wantsJson(cmd), { ok: true, release: r }, () => `created ${renderRelease(r)}`);
    });

  release
    .command('list')
    .description('list releases')
    .option('--channel <name>', 'only releases on this channel')
    .option('--json', 'print JSON')
    .action(async (o: { channel?: string }, cmd: Command) => {
      const { items } = await clientFor(cmd).listReleases(o.channel);
      printResult(wantsJson(cmd), { ok: true, releases: items }, () =>
        items.length === 0
          ? 'no releases'
          : table(
              ['VERSION', 'KIND', 'SEC', 'HARDWARE', 'CHANNELS', 'SIZE', 'CREATED'],
              items.map((r) => [
                r.version,
                r.kind,
                r.securityVersion,
                (r.compatible ?? []).join(','),
                (r.channels ?? []).join(','),
                size(r.image?.size),
                when(r.created),
              ]),
            ),
      );
    });

  release
    .command('show')
    .description('show one release')
    .argument('<version>', 'release version')
    .option('--json', 'print JSON')
    .action(async (version: string, _o: unknown, cmd: Command) => {
      checkReleaseVersion(version);
      const r = await clientFor(cmd).getRelease(version);
      printResult(wantsJson(cmd), { ok: true, release: r }, () => renderRelease(r));
    });

  release
    .command('promote')
    .description('publish a release on the next channel (dev → staging → prod)')
    .argument('<version>', 'release version')
    .option('--channel <channel>', 'target channel (as in `release create --channel`)')
    .option('--to <channel>', 'the same as --channel')
    .option('--override-reason <text>', 'admin only: promote despite policy violations (audited)')
    .option('--json', 'print JSON')
    .action(
      async (
        version: string,
        o: { channel?: string; to?: string; overrideReason?: string },
        cmd: Command,
      ) => {
        const channel = o.channel ?? o.to;
        if (!channel)
          throw new CliError('FLOTILLA_ERR_CLI_USAGE', 'release promote needs --channel <channel>');
        checkReleaseVersion(version);
        channelIndex(channel);
        const r = o.overrideReason
          ? await clientFor(cmd).request<ReleaseInfo>(
              'POST',
              `releases/${encodeURIComponent(version)}/promote`,
              {
                channel,
                overrideReason: o.overrideReason,
              },
            )
          : await clientFor(cmd).promoteRelease(version, channel);
        printResult(wantsJson(cmd), { ok: true, release: r }, () => `promoted ${renderRelease(r)}`);
      },
    );

  release
    .command('vulns')
    .description("list a release's known vulnerabilities (package, installed, fixed, ids, severity)")
    .argument('<version>', 'release version')
    .option(
      '--json',
      'print JSON: {"version","vulnerabilities":[{"id","aliases","package","installed","fixed","severity"}]}',
    )
    .action(async (version: string, _o: unknown, cmd: Command) => printReleaseVulns(version, cmd));
}
