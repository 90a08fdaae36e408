#!/usr/bin/env node
// `npx -y pnpm@12.4.2 boot-test [--arch x86_64|aarch64|all] [--json] [--only a,b]`: real firmware
// (firmware-images/boot) on a real factory disk (`flotilla disk build --arch`), booted by real
// firmware and bootloader in QEMU (TCG), talking to a real Flotilla server on the host's loopback.
// Each VM's serial console is kept in test-output/boot/<run>/. The last line with --json:
// {"scenarios":[{"arch","name","result","seconds","boots",...}],"serialLogs":[paths]}; exits 1 if any fails.
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Vm } from './qemu.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../..');
const { startServer } = await import(join(repo, 'packages/server/dist/index.js'));
const { httpServerHandle } = await import(join(repo, 'simulators/fleet/dist/index.js'));
const boot = await import(join(repo, 'firmware-images/boot/build.mjs'));

const SCENARIOS = [
  'factory-boot',
  'update-commit',
  'bad-release-fallback',
  'power-cut-slot-write',
  'power-cut-env-write',
  'recovery-flash',
];
/** Budgets under TCG on a busy 2-core machine: generous, but every wait is bounded. */
const BUDGET = {
  bootToAgentMs: 6 * 60_000,
  rolloutMs: 20 * 60_000,
  firmwareBuildMs: 20 * 60_000,
};

const { values } = parseArgs({
  options: {
    arch: { type: 'string', default: 'all' },
    json: { type: 'boolean', default: false },
    only: { type: 'string' },
    out: { type: 'string' },
  },
});
const archs = values.arch === 'all' ? ['x86_64', 'aarch64'] : [values.arch];
for (const a of archs)
  if (!['x86_64', 'aarch64'].includes(a)) {
    process.stderr.write(`error: unknown --arch '${a}' (x86_64, aarch64 or all)\n`);
    process.exit(2);
  }
const wanted = values.only ? values.only.split(',') : SCENARIOS;
const runDir = resolve(
  values.out ?? join(repo, 'test-output/boot', new Date().toISOString().replace(/[:.]/g, '-')),
);
mkdirSync(runDir, { recursive: true });
const say = (m) => (values.json ? process.stderr.write(`${m}\n`) : process.stdout.write(`${m}\n`));

const results = [];
const serialLogs = [];
const cleanups = [];
let stopping = false;
async function cleanup() {
  while (cleanups.length)
    await cleanups
      .pop()()
      .catch(() => undefined);
}
for (const sig of ['SIGINT', 'SIGTERM'])
  process.on(sig, () => {
    if (stopping) return;
    stopping = true;
    cleanup().finally(() => process.exit(130));
  });

function node(args, opts = {}) {
  return execFileSync(process.execPath, args, { cwd: repo, maxBuffer: 64 * 1024 * 1024, ...opts });
}

function runNode(args, timeoutMs) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, args, { cwd: repo, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (b) => {
      out += b;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolvePromise(out);
      else reject(new Error(`node ${args.join(' ')} exited ${code}`));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, fn, timeoutMs, everyMs = 1000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await sleep(everyMs);
  }
}

/** Keys, firmware set and server shared by the scenarios of one architecture. */
async function prepare(arch) {
  const dir = join(runDir, arch);
  mkdirSync(dir, { recursive: true });
  const keys = join(dir, 'keys');
  node([
    'packages/cli/dist/bin/flotilla.js',
    'keys',
    'init',
    '--dir',
    keys,
    '--label',
    'TEST-ONLY',
    '--json',
  ]);
  say(`${arch}: building the firmware set from Debian packages (cached downloads)`);
  const built = JSON.parse(
    await runNode(
      [
        'firmware-images/boot/build.mjs',
        '--arch',
        arch,
        '--keys',
        keys,
        '--out',
        join(dir, 'firmware'),
        '--json',
      ],
      BUDGET.firmwareBuildMs,
    ),
  );
  const releases = new Map(built.releases.map((r) => [r.id, r]));
  const factory = join(dir, 'factory.img');
  node([
    'packages/cli/dist/bin/flotilla.js',
    'disk',
    'build',
    '--arch',
    arch,
    '--bundle',
    releases.get('1.0.0').bundlePath,
    '--root',
    join(keys, 'root.json'),
    '--data-size',
    '64M',
    '-o',
    factory,
    '--json',
  ]);
  const token = `flt_boot_${randomBytes(24).toString('base64url')}`;
  const running = await startServer({
    dataDir: join(dir, 'server'),
    importKeysFrom: keys,
    autoAccept: true,
    adminToken: token,
    host: '127.0.0.1',
    port: 0,
    mqttPort: 0,
    publicUrl: `http://${boot.GUEST_SERVER.host}`,
    logLevel: 'warn',
    limits: { rolloutTickMs: 1000, deltaWaitMs: 120_000 },
  });
  cleanups.push(() => running.close());
  const mqtt = new URL(running.addresses.mqtt);
  const api = new URL(running.addresses.api);
  const server = httpServerHandle({
    apiUrl: running.addresses.api,
    dashboardUrl: running.addresses.dashboard,
    mqtt: { host: mqtt.hostname, port: Number(mqtt.port) },
    token,
    close: async () => undefined,
  });
  for (const r of built.releases)
    await server.publishRelease({ bundlePath: r.bundlePath, version: r.version });
  const forwards = [
    { guestHost: boot.GUEST_SERVER.host, guestPort: boot.GUEST_SERVER.mqttPort, hostPort: Number(mqtt.port) },
    { guestHost: boot.GUEST_SERVER.host, guestPort: boot.GUEST_SERVER.httpPort, hostPort: Number(api.port) },
  ];
  const deviceId = `qemu-${arch.replace('_', '-')}`;
  return {
    arch,
    dir,
    keys,
    releases,
    factory,
    server,
    forwards,
    deviceId,
    token,
    apiUrl: running.addresses.api,
  };
}

async function apiGet(ctx, path) {
  const res = await fetch(`${ctx.apiUrl}/api/v1${path}`, {
    headers: { authorization: `Bearer ${ctx.token}` },
    signal: AbortSignal.timeout(30_000),
  });
  if (!res.ok) throw new Error(`GET ${path}: ${res.status}`);
  return res.json();
}

async function deviceView(ctx) {
  return apiGet(ctx, `/devices/${ctx.deviceId}`).catch(() => null);
}

function newVm(ctx, name, disk) {
  const logPath = join(ctx.dir, `${name}.serial.log`);
  serialLogs.push(logPath);
  const vm = new Vm({ arch: ctx.arch, disk, logPath, workDir: ctx.dir, forwards: ctx.forwards });
  cleanups.push(() => vm.close());
  return vm;
}

/** Boots until userspace reports slot and release, then until the server sees the agent online on it. */
async function bootToAgent(ctx, vm, from, expect) {
  const up = await vm.waitFor(/flotilla-rc: userspace up, slot ([AB]), release ([^,\s]+)/, {
    from,
    timeoutMs: BUDGET.bootToAgentMs,
    what: 'userspace',
  });
  const [, slot, version] = up.match;
  if (expect.slot && slot !== expect.slot) throw new Error(`booted slot ${slot}, expected ${expect.slot}`);
  if (expect.version && version !== expect.version)
    throw new Error(`booted release ${version}, expected ${expect.version}`);
  const online = await until(
    `${ctx.deviceId} online on ${version}`,
    async () => {
      const d = await deviceView(ctx);
      return d?.online && d.version === version ? d : null;
    },
    BUDGET.bootToAgentMs,
  );
  return { slot, version, upAt: up.line.t, online };
}

async function rolloutTo(ctx, version, extra = {}) {
  const id = await ctx.server.startRollout({
    name: `boot-test ${version}`,
    release: version,
    phases: [{ name: 'all', percent: 100, errorThreshold: 0 }],
    devices: [ctx.deviceId],
    deviceTimeoutSeconds: 1800,
    ...extra,
  });
  return id;
}

async function rolloutEnd(ctx, id) {
  return until(
    `rollout ${id} settles`,
    async () => {
      const v = await ctx.server.rollout(id);
      return v.status === 'completed' ||
        v.status === 'aborted' ||
        (v.status === 'paused' && v.totals.inFlight === 0)
        ? v
        : null;
    },
    BUDGET.rolloutMs,
    2000,
  );
}

async function scenario(arch, name, fn) {
  if (!wanted.includes(name)) return;
  const started = Date.now();
  say(`${arch} ${name}: running`);
  const r = { arch, name, result: 'fail', seconds: 0, boots: 0 };
  try {
    Object.assign(r, await fn(), { result: 'pass' });
  } catch (err) {
    r.error = err.message;
  }
  r.seconds = Math.round((Date.now() - started) / 100) / 10;
  results.push(r);
  say(`${arch} ${name}: ${r.result} in ${r.seconds} s, ${r.boots} boots${r.error ? ` — ${r.error}` : ''}`);
  return r;
}

async function runX86(ctx) {
  const disk = join(ctx.dir, 'device.img');
  copyFileSync(ctx.factory, disk);
  const vm = newVm(ctx, 'device', disk);
  let state = { slot: 'A', version: '1.0.0' };

  const factory = await scenario(ctx.arch, 'factory-boot', async () => {
    const t0 = Date.now();
    vm.start();
    const from = 0;
    await vm.waitFor(/Welcome to GRUB|GRUB/, { from, timeoutMs: 120_000, what: 'GRUB banner' });
    await vm.waitFor(/Linux version \d/, { from, timeoutMs: 120_000, what: 'kernel banner' });
    const b = await bootToAgent(ctx, vm, from, { slot: 'A', version: '1.0.0' });
    return {
      boots: vm.boots(from),
      powerOnToUserspaceSeconds: (b.upAt - t0) / 1000,
      powerOnToAgentOnlineSeconds: (Date.now() - t0) / 1000,
    };
  });
  if (factory?.result !== 'pass') return;

  await scenario(ctx.arch, 'update-commit', async () => {
    const from = vm.mark();
    const t0 = Date.now();
    const id = await rolloutTo(ctx, '1.1.0');
    const rebootAt = await vm.waitFor(/reboot: Restarting system|BdsDxe: loading/, {
      from,
      timeoutMs: BUDGET.rolloutMs,
      what: 'the reboot into the new slot',
    });
    const b = await bootToAgent(ctx, vm, rebootAt.index, { slot: 'B', version: '1.1.0' });
    const view = await rolloutEnd(ctx, id);
    const deps = await ctx.server.deployments(id);
    if (view.status !== 'completed' || deps[0]?.state !== 'healthy')
      throw new Error(`rollout ${view.status}, deployment ${JSON.stringify(deps)}`);
    const healthyAt = Date.now();
    state = { slot: 'B', version: '1.1.0' };
    const rollout = await apiGet(ctx, `/rollouts/${id}`);
    return {
      boots: vm.boots(from),
      offerToHealthySeconds: (healthyAt - t0) / 1000,
      downtimeSeconds: (b.online ? Date.now() : healthyAt) / 1000 - rebootAt.line.t / 1000,
      bytes: rollout.bytes ?? null,
    };
  });

  await scenario(ctx.arch, 'bad-release-fallback', async () => {
    const out = { boots: 0, kinds: [] };
    for (const bad of ['1.2.0-bad-panic', '1.2.0-bad-health']) {
      const from = vm.mark();
      const id = await rolloutTo(ctx, bad);
      const view = await rolloutEnd(ctx, id);
      const deps = await ctx.server.deployments(id);
      const d = deps[0];
      if (!d || !['rolled-back', 'failed'].includes(d.state))
        throw new Error(`${bad}: deployment ${JSON.stringify(d)} (rollout ${view.status})`);
      const back = await bootToAgent(ctx, vm, vm.lines.length - 1 > from ? from : from, state).catch(
        () => null,
      );
      const dev = await deviceView(ctx);
      if (dev?.version !== state.version)
        throw new Error(`${bad}: device runs ${dev?.version}, expected ${state.version}`);
      const panics = vm.lines.slice(from).filter((l) => /Kernel panic/.test(l.text)).length;
      const fellBack = vm.lines.slice(from).some((l) => /falling back/.test(l.text));
      if (bad.endsWith('panic') && (!panics || !fellBack))
        throw new Error(
          `${bad}: expected kernel panics and a GRUB fallback (panics ${panics}, fallback ${fellBack})`,
        );
      if (view.status !== 'paused') throw new Error(`${bad}: rollout ${view.status}, expected paused`);
      out.boots += vm.boots(from);
      out.kinds.push({
        release: bad,
        deployment: d.state,
        reason: d.failureReason,
        panics,
        fellBack,
        back: !!back,
      });
      // clear the paused rollout so the next one can start
      await fetch(`${ctx.apiUrl}/api/v1/rollouts/${id}/abort`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ctx.token}`, 'content-type': 'application/json' },
        body: '{}',
      });
    }
    return out;
  });
}

async function main() {
  for (const arch of archs) {
    if (arch !== 'x86_64') {
      for (const name of SCENARIOS.filter((s) => wanted.includes(s)))
        results.push({
          arch,
          name,
          result: 'fail',
          seconds: 0,
          boots: 0,
          error: 'aarch64 boot (U-Boot from Debian source) is not in this harness yet',
        });
      continue;
    }
    let ctx;
    try {
      ctx = await prepare(arch);
      await runX86(ctx);
    } catch (err) {
      results.push({ arch, name: 'prepare', result: 'fail', seconds: 0, boots: 0, error: err.message });
    }
    for (const name of SCENARIOS.filter(
      (s) => wanted.includes(s) && !results.some((r) => r.arch === arch && r.name === s),
    ))
      results.push({
        arch,
        name,
        result: 'fail',
        seconds: 0,
        boots: 0,
        error: 'not run (an earlier scenario failed)',
      });
  }
  await cleanup();
  const summary = { scenarios: results, serialLogs };
  writeFileSync(join(runDir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
  if (values.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  else say(`serial logs: ${serialLogs.join(' ')}`);
  process.exit(results.every((r) => r.result === 'pass') ? 0 : 1);
}

main().catch(async (err) => {
  process.stderr.write(`boot-test: ${err.stack ?? err.message}\n`);
  await cleanup();
  process.exit(1);
});
