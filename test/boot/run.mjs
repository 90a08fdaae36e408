#!/usr/bin/env node
// `npx -y pnpm@12.4.2 boot-test [--arch x86_64|aarch64|all] [--json] [--only a,b]`: real firmware
// (firmware-images/boot) on a real factory disk (`flotilla disk build --arch`), booted by real
// firmware and bootloader in QEMU (TCG), talking to a real Flotilla server on the host's loopback.
// Each VM's serial console is kept in test-output/boot/<run>/. The last line with --json:
// {"scenarios":[{"arch","name","result","seconds","boots",...}],"serialLogs":[paths]}; exits 1 if any fails.
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  copyFileSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Vm } from './qemu.mjs';

const MIB = 1024 * 1024;
/** The ESP of an x86_64 factory disk: partition 1, from 1 MiB (boot contract). */
const ESP_BYTES = 32 * MIB;
const GRUBENV_MAGIC = '# GRUB Environment Block\n';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../..');
const { startServer } = await import(join(repo, 'packages/server/dist/index.js'));
const { httpServerHandle } = await import(join(repo, 'simulators/fleet/dist/index.js'));
const boot = await import(join(repo, 'firmware-images/boot/build.mjs'));
const protocol = await import(join(repo, 'packages/protocol/dist/index.js'));
const UBOOT_ENV_DISK_OFFSETS = protocol.ubootEnvDiskOffsets();
const UBOOT_ENV_SIZE = protocol.UBOOT_ENV.size;

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
      else reject(new Error(`node ${args.join(' ')} exited ${code}: ${out.slice(-2000)}`));
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
/**
 * What the firmware set is built from: the recipe, its lock and the compiled agent. Equal stamps
 * reuse the firmware (and its TEST-ONLY keys) of an earlier run from test-output/boot/cache.
 */
function firmwareStamp(arch) {
  const h = createHash('sha256');
  const files = [
    'firmware-images/boot/build.mjs',
    'firmware-images/boot/cpio.mjs',
    `firmware-images/boot/packages.${arch}.lock`,
  ];
  for (const pkg of ['agent', 'protocol', 'delta', 'image']) {
    const dist = join(repo, 'packages', pkg, 'dist');
    for (const f of readdirSync(dist, { recursive: true }).sort())
      if (statSync(join(dist, f)).isFile()) files.push(join('packages', pkg, 'dist', f));
  }
  for (const f of files) h.update(f).update(readFileSync(join(repo, f)));
  return h.digest('hex');
}

/** The releases each scenario publishes (1.0.0 is always the factory release). */
const SCENARIO_RELEASES = {
  'factory-boot': ['1.0.0'],
  'update-commit': ['1.1.0'],
  'bad-release-fallback': ['1.2.0-bad-panic', '1.2.0-bad-health'],
  'power-cut-slot-write': ['1.3.0'],
  'power-cut-env-write': ['1.4.0'],
  'recovery-flash': ['recovery'],
};

async function firmwareSet(arch) {
  const cache = join(repo, 'test-output/boot/cache', arch);
  const stamp = firmwareStamp(arch);
  const stampFile = join(cache, 'stamp');
  const keys = join(cache, 'keys');
  const out = join(cache, 'firmware');
  const needed = [...new Set(['1.0.0', ...wanted.flatMap((s) => SCENARIO_RELEASES[s] ?? [])])];
  const indexFile = join(out, arch, 'index.json');
  const cached =
    existsSync(stampFile) && readFileSync(stampFile, 'utf8') === stamp && existsSync(indexFile)
      ? JSON.parse(readFileSync(indexFile, 'utf8'))
      : null;
  if (cached && needed.every((id) => cached.releases.some((r) => r.id === id))) {
    say(`${arch}: reusing the firmware set in ${cache}`);
    return { keys, built: cached };
  }
  rmSync(cache, { recursive: true, force: true });
  mkdirSync(cache, { recursive: true });
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
  // only the releases the chosen scenarios publish: each is a 192 MiB image to build and hash
  say(`${arch}: building firmware ${needed.join(', ')} from Debian packages (cached downloads)`);
  const built = JSON.parse(
    await runNode(
      [
        'firmware-images/boot/build.mjs',
        '--arch',
        arch,
        '--keys',
        keys,
        '--out',
        out,
        '--only',
        needed.join(','),
        '--json',
      ],
      BUDGET.firmwareBuildMs,
    ),
  );
  writeFileSync(stampFile, stamp);
  return { keys, built };
}

/**
 * Our U-Boot for the QEMU arm64 board (firmware-images/uboot/build-uboot.mjs: Debian's source,
 * env on the SD card; cached after the first build, which takes minutes): u-boot.bin and its
 * default environment (u-boot-initial-env), which the factory env must carry.
 */
async function ubootBuild() {
  const out = await runNode(['firmware-images/uboot/build-uboot.mjs', '--json'], BUDGET.firmwareBuildMs);
  const result = JSON.parse(out.trim().split('\n').at(-1));
  if (!result.path || !result.initialEnv) throw new Error(`build-uboot.mjs: ${out}`);
  return result;
}

/**
 * The disk layout options of each board. aarch64: QEMU's SD card model wants a power-of-two
 * size, so the disk is 512 MiB and the data partition takes what the two 192 MiB slots leave.
 */
function diskArgs(arch, uboot) {
  if (arch === 'aarch64')
    return ['--disk-size', '512M', '--data-size', '16M', '--uboot-initial-env', uboot.initialEnv];
  return ['--data-size', '64M'];
}

async function prepare(arch) {
  const dir = join(runDir, arch);
  mkdirSync(dir, { recursive: true });
  const { keys, built } = await firmwareSet(arch);
  const releases = new Map(built.releases.map((r) => [r.id, r]));
  const factory = join(dir, 'factory.img');
  const uboot = arch === 'aarch64' ? await ubootBuild() : null;
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
    ...diskArgs(arch, uboot),
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
    factorySize: statSync(factory).size,
    uboot,
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

/** Artifact bytes the server has sent (its /metrics counter). */
async function bytesServed(ctx) {
  const res = await fetch(`${ctx.apiUrl}/metrics`, {
    headers: { authorization: `Bearer ${ctx.token}` },
    signal: AbortSignal.timeout(30_000),
  });
  if (!res.ok) return null;
  let total = 0;
  for (const line of (await res.text()).split('\n'))
    if (line.startsWith('flotilla_artifact_bytes_served_total')) total += Number(line.split(' ').at(-1));
  return total;
}

/** The agent's resident memory as the device printed it last (kB), or null. */
function agentRssKb(vm) {
  for (let i = vm.lines.length - 1; i >= 0; i--) {
    const m = /flotilla-rss: agent (\d+) kB/.exec(vm.lines[i].text);
    if (m) return Number(m[1]);
  }
  return null;
}

async function deviceView(ctx) {
  return apiGet(ctx, `/devices/${ctx.deviceId}`).catch(() => null);
}

/**
 * The factory's provisioning step: a one-time token from the server, written into the data
 * partition of the board's disk (debugfs on the partition, no mount), where agent.json names it.
 */
async function provision(ctx, disk) {
  const res = await fetch(`${ctx.apiUrl}/api/v1/provisioning-tokens`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ctx.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ label: `boot-test ${ctx.arch}`, ttlSeconds: 86_400, autoAccept: true }),
  });
  if (!res.ok) throw new Error(`provisioning token: ${res.status} ${await res.text()}`);
  const { token } = await res.json();
  const gpt = JSON.parse(
    execFileSync('sfdisk', ['--json', disk], { encoding: 'utf8' }),
  ).partitiontable.partitions.find((p) => p.name === 'data');
  const offset = gpt.start * 512;
  const size = gpt.size * 512;
  const part = join(ctx.dir, 'data-part.img');
  const tokenFile = join(ctx.dir, 'provisioning-token');
  writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
  const fd = openSync(disk, 'r+');
  try {
    const bytes = Buffer.alloc(size);
    readSync(fd, bytes, 0, size, offset);
    writeFileSync(part, bytes);
    execFileSync(
      'debugfs',
      ['-w', '-R', `write ${tokenFile} ${boot.PROVISIONING_TOKEN_FILE.replace('/data', '')}`, part],
      {
        stdio: 'ignore',
      },
    );
    writeSync(fd, readFileSync(part), 0, size, offset);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
    rmSync(part, { force: true });
    rmSync(tokenFile, { force: true });
  }
}

function newVm(ctx, name, disk) {
  const logPath = join(ctx.dir, `${name}.serial.log`);
  serialLogs.push(logPath);
  const vm = new Vm({
    arch: ctx.arch,
    disk,
    logPath,
    workDir: ctx.dir,
    forwards: ctx.forwards,
    ubootBin: ctx.uboot?.path,
  });
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
    // fetch's own message is only "fetch failed": the reason is its cause
    r.error = err.cause ? `${err.message}: ${err.cause.message ?? err.cause}` : err.message;
    if (err.stack) say(err.stack);
  }
  r.seconds = Math.round((Date.now() - started) / 100) / 10;
  results.push(r);
  say(`${arch} ${name}: ${r.result} in ${r.seconds} s, ${r.boots} boots${r.error ? ` — ${r.error}` : ''}`);
  return r;
}

/** What differs between the boards; everything else is one scenario implementation. */
const BOARDS = {
  x86_64: {
    bootloaderBanner: /Welcome to GRUB|GRUB/,
    // the kernel's last words, or the firmware starting again (a reset without them)
    rebootLine: /reboot: Restarting system|BdsDxe: loading/,
    envSnapshot: espEnvBlocks,
    nextBootSlot: grubNextBootSlot,
    // power-cut-env-write cuts the agent's grubenv writes; GRUB's in-place save_env is not cut
    cutBootloaderEnvWrite: false,
  },
  aarch64: {
    bootloaderBanner: /U-Boot \d{4}\.\d+/,
    rebootLine: /reboot: Restarting system|U-Boot \d{4}\.\d+/,
    envSnapshot: ubootEnvCopies,
    nextBootSlot: ubootNextBootSlot,
    // power-cut-env-write also cuts U-Boot's own saveenv of a trial boot (redundant env)
    cutBootloaderEnvWrite: true,
  },
};

/** The scenarios on one board: the same steps on x86_64 (OVMF + GRUB) and aarch64 (U-Boot). */
async function runScenarios(ctx) {
  const board = BOARDS[ctx.arch];
  const disk = join(ctx.dir, 'device.img');
  copyFileSync(ctx.factory, disk);
  await provision(ctx, disk);
  const vm = newVm(ctx, 'device', disk);
  let state = { slot: 'A', version: '1.0.0' };

  const factory = await scenario(ctx.arch, 'factory-boot', async () => {
    const t0 = Date.now();
    vm.start();
    const from = 0;
    await vm.waitFor(board.bootloaderBanner, { from, timeoutMs: 120_000, what: 'bootloader banner' });
    await vm.waitFor(/Linux version \d/, { from, timeoutMs: 300_000, what: 'kernel banner' });
    const b = await bootToAgent(ctx, vm, from, { slot: 'A', version: '1.0.0' });
    return {
      boots: vm.boots(from),
      powerOnToUserspaceSeconds: (b.upAt - t0) / 1000,
      powerOnToAgentOnlineSeconds: (Date.now() - t0) / 1000,
    };
  });
  if (factory === undefined) {
    // not asked for: the factory boot is still the start of every later scenario
    vm.start();
    await bootToAgent(ctx, vm, 0, { slot: 'A', version: '1.0.0' });
  } else if (factory.result !== 'pass') return;

  await scenario(ctx.arch, 'update-commit', async () => {
    const from = vm.mark();
    const t0 = Date.now();
    const bytesBefore = await bytesServed(ctx);
    const id = await rolloutTo(ctx, '1.1.0');
    const rebootAt = await vm.waitFor(board.rebootLine, {
      from,
      timeoutMs: BUDGET.rolloutMs,
      what: 'the reboot into the new slot',
    });
    await bootToAgent(ctx, vm, rebootAt.index, { slot: 'B', version: '1.1.0' });
    const onlineAt = Date.now();
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
      // from the old system's last words to the new one online at the server
      downtimeSeconds: (onlineAt - rebootAt.line.t) / 1000,
      bytesSent: bytesBefore === null ? null : (await bytesServed(ctx)) - bytesBefore,
      imageBytes: ctx.releases.get('1.1.0').imageSize,
      agentRssKb: agentRssKb(vm),
      rollout: rollout.status,
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
      // the board is back on the committed slot and release, agent online
      const back = await bootToAgent(ctx, vm, from, state).catch(() => null);
      const dev = await deviceView(ctx);
      if (dev?.version !== state.version)
        throw new Error(`${bad}: device runs ${dev?.version}, expected ${state.version}`);
      const panics = vm.lines.slice(from).filter((l) => /Kernel panic/.test(l.text)).length;
      const fellBack = vm.lines.slice(from).some((l) => /falling back/.test(l.text));
      if (bad.endsWith('panic') && (!panics || !fellBack))
        throw new Error(
          `${bad}: expected kernel panics and a bootloader fallback (panics ${panics}, fallback ${fellBack})`,
        );
      // the agent says why: the bootloader fell back (panic), or its health check failed
      const wantReason = bad.endsWith('panic')
        ? 'FLOTILLA_ERR_AGENT_BOOT_FALLBACK'
        : 'FLOTILLA_ERR_AGENT_HEALTH_CHECK_FAILED';
      if (!String(d.failureReason ?? '').startsWith(wantReason))
        throw new Error(`${bad}: failure reason ${JSON.stringify(d.failureReason)}, expected ${wantReason}`);
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

  const other = (slot) => (slot === 'A' ? 'B' : 'A');
  await scenario(ctx.arch, 'power-cut-slot-write', async () => {
    const from = vm.mark();
    const target = { slot: other(state.slot), version: '1.3.0' };
    // a cut deployment is offered again (retries); the agent also resumes a persisted one by itself
    const id = await rolloutTo(ctx, target.version, { retries: { failed: 5, timedOut: 5 } });
    const cuts = await powerCuts(vm, {
      cuts: 3,
      // the slot is written while the update downloads and installs; after a cut, once the agent
      // is back online it resumes the deployment it persisted (or takes the offer again)
      trigger: (_vm, cut) =>
        cut === 0
          ? until(
              'the slot write',
              async () => ['downloading', 'installing'].includes(await deploymentState(ctx, id)),
              BUDGET.rolloutMs,
              500,
            )
          : until(
              'the agent back online',
              async () => (await deviceView(ctx))?.online,
              BUDGET.bootToAgentMs,
              500,
            ),
      // the write and the arming take 15-25 s under TCG: cuts land in the first 8 s of it
      jitterMs: 8_000,
      // a cut before the agent armed the trial must boot the old slot; one after it (a slow
      // trigger, a resumed write near its end) boots the new one, and the write is over
      acceptable: (armed) => [armed === target.slot ? target : state],
      lastCutWhen: (armed) => armed === target.slot,
    });
    if (!cuts.some((c) => c.bootedSlot === state.slot))
      throw new Error(`no power cut landed in the slot write: ${JSON.stringify(cuts)}`);
    const view = await rolloutEnd(ctx, id);
    const deps = await ctx.server.deployments(id);
    if (view.status !== 'completed' || deps[0]?.state !== 'healthy')
      throw new Error(`after the cuts: rollout ${view.status}, deployment ${JSON.stringify(deps[0])}`);
    const dev = await deviceView(ctx);
    if (dev?.version !== target.version)
      throw new Error(`device runs ${dev?.version}, expected ${target.version}`);
    state = target;
    return { boots: vm.boots(from), cuts };
  });

  await scenario(ctx.arch, 'power-cut-env-write', async () => {
    const from = vm.mark();
    const target = { slot: other(state.slot), version: '1.4.0' };
    // a cut deployment is offered again (retries); the agent also resumes a persisted one by itself
    const id = await rolloutTo(ctx, target.version, { retries: { failed: 5, timedOut: 5 } });
    const cuts = await powerCuts(vm, {
      // three: a cut after the agent armed the trial, then at most one cut in each of two trial
      // boots' save_env, leaves the third attempt of bootlimit 3; a fourth could rightly end the
      // trial in a fallback
      cuts: 3,
      // any change of the boot environment on the disk: the agent arming the trial (GRUB: a new
      // block written beside grubenv, then renamed; U-Boot: fw_setenv writing the other copy) or
      // the bootloader's own save at a trial boot (GRUB save_env, U-Boot saveenv)
      trigger: async () => {
        let before = board.envSnapshot(vm.opts.disk);
        await until(
          'an environment write',
          async () => {
            const now = board.envSnapshot(vm.opts.disk);
            const changed = !sameBlocks(before, now);
            before = now;
            return changed;
          },
          BUDGET.rolloutMs,
          20,
        );
      },
      jitterMs: 30,
      acceptable: () => [state, target],
      watchFromPowerOn: board.cutBootloaderEnvWrite,
    });
    const view = await rolloutEnd(ctx, id);
    const deps = await ctx.server.deployments(id);
    if (view.status !== 'completed' || deps[0]?.state !== 'healthy')
      throw new Error(`after the cuts: rollout ${view.status}, deployment ${JSON.stringify(deps[0])}`);
    const dev = await deviceView(ctx);
    if (dev?.version !== target.version)
      throw new Error(`device runs ${dev?.version}, expected ${target.version}`);
    state = target;
    return { boots: vm.boots(from), cuts };
  });

  await scenario(ctx.arch, 'recovery-flash', async () => {
    // the board is replaced by a blank one: the operator retires the old identity, flashes the
    // recovery bundle with `flotilla flash`, and the new board joins the fleet with its own key
    await vm.kill();
    const res = await fetch(`${ctx.apiUrl}/api/v1/devices/${ctx.deviceId}/decommission`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ctx.token}`, 'content-type': 'application/json' },
      body: '{}',
    });
    if (!res.ok) throw new Error(`decommission: ${res.status} ${await res.text()}`);
    const blank = join(ctx.dir, 'blank.img');
    writeFileSync(blank, '');
    truncateSync(blank, ctx.factorySize);
    const recovery = ctx.releases.get('recovery');
    // not execFileSync: the server runs in this process and must keep serving while flash runs
    // (a blocked event loop let a pooled keep-alive socket expire under the next request)
    await runNode(
      [
        'packages/cli/dist/bin/flotilla.js',
        'flash',
        '--arch',
        ctx.arch,
        '--recovery',
        '--bundle',
        recovery.bundlePath,
        '--root',
        join(ctx.keys, 'root.json'),
        ...diskArgs(ctx.arch, ctx.uboot),
        '--target',
        blank,
        '--json',
      ],
      BUDGET.firmwareBuildMs,
    );
    await provision(ctx, blank);
    const fresh = newVm(ctx, 'recovered', blank);
    const t0 = Date.now();
    fresh.start();
    await fresh.waitFor(board.bootloaderBanner, { timeoutMs: 120_000, what: 'bootloader banner' });
    await bootToAgent(ctx, fresh, 0, { slot: 'A', version: recovery.version });
    const dev = await deviceView(ctx);
    if (dev?.status !== 'accepted') throw new Error(`recovered board is ${dev?.status}`);
    await fresh.kill();
    return { boots: fresh.boots(0), powerOnToAgentOnlineSeconds: (Date.now() - t0) / 1000 };
  });
}

/** Every GRUB environment block on the ESP (512-byte aligned), by offset: grubenv and its copies. */
function espEnvBlocks(disk) {
  const fd = openSync(disk, 'r');
  try {
    const esp = Buffer.alloc(ESP_BYTES);
    readSync(fd, esp, 0, esp.length, MIB);
    const blocks = new Map();
    for (let at = 0; at + 1024 <= esp.length; at += 512)
      if (esp.toString('latin1', at, at + GRUBENV_MAGIC.length) === GRUBENV_MAGIC)
        blocks.set(at, esp.toString('latin1', at, at + 1024));
    return blocks;
  } finally {
    closeSync(fd);
  }
}

/** Both copies of the U-Boot environment on the disk (redundant env, raw offsets), by offset. */
function ubootEnvCopies(disk) {
  const fd = openSync(disk, 'r');
  try {
    const copies = new Map();
    for (const at of UBOOT_ENV_DISK_OFFSETS) {
      const copy = Buffer.alloc(UBOOT_ENV_SIZE);
      readSync(fd, copy, 0, copy.length, at);
      copies.set(at, copy.toString('latin1'));
    }
    return copies;
  } finally {
    closeSync(fd);
  }
}

const sameBlocks = (a, b) => a.size === b.size && [...a].every(([k, v]) => b.get(k) === v);

/**
 * Power cuts at random instants of a phase: `trigger(vm)` resolves when the phase is under way,
 * then QEMU is SIGKILLed after a random delay below `jitterMs`; the board is powered on again and
 * must come up on the slot its bootloader picks from the environment the cut left on the disk
 * (`armed`), in a state `acceptable(armed)` allows. Repeated `cuts` times, or until
 * `lastCutWhen(armed)`: the phase is over. Returns what each cut saw.
 */
async function powerCuts(vm, { cuts, trigger, jitterMs, acceptable, lastCutWhen, watchFromPowerOn = false }) {
  const board = BOARDS[vm.opts.arch];
  const seen = [];
  let watching = null; // a trigger that has watched since the last power-on
  for (let i = 0; i < cuts; i++) {
    await (watching ?? trigger(vm, i));
    watching = null;
    const delay = Math.floor(Math.random() * jitterMs);
    await sleep(delay);
    await vm.kill();
    // the disk is what the next power-on reads: QEMU is gone, its writes are in the file
    const armed = board.nextBootSlot(vm.opts.disk);
    const from = vm.mark();
    // watchFromPowerOn: the next trigger's baseline is taken before power-on, so a write the
    // bootloader makes before any kernel runs (a trial boot's saveenv) is cut too
    const next = watchFromPowerOn && i + 1 < cuts ? trigger(vm, i + 1) : null;
    vm.start();
    const userspace = vm.waitFor(/flotilla-rc: userspace up, slot ([AB]), release ([^,\s]+)/, {
      from,
      timeoutMs: BUDGET.bootToAgentMs,
      what: `userspace after power cut ${i + 1}`,
    });
    if (next) {
      userspace.catch(() => undefined); // left to fail when the next cut comes first
      const first = await Promise.race([userspace.then(() => 'userspace'), next.then(() => 'write')]);
      watching = next;
      if (first === 'write') {
        // only the bootloader writes the environment before userspace: this power-on is cut
        // again in that write, before a kernel ran, so there is no booted slot to check yet
        seen.push({ delayMs: delay, armed, bootedSlot: null, version: null, nextCutInBootloaderWrite: true });
        continue;
      }
    }
    const up = await userspace;
    const [, slot, version] = up.match;
    if (slot !== armed || !acceptable(armed).some((a) => a.slot === slot && a.version === version))
      throw new Error(
        `after power cut ${i + 1} (${delay} ms in) the board runs ${version} in slot ${slot}; the environment on the disk boots slot ${armed}`,
      );
    seen.push({ delayMs: delay, armed, bootedSlot: slot, version });
    if (lastCutWhen?.(armed)) break;
  }
  return seen;
}

/** The slot GRUB boots at the next power-on: grub.cfg's decision on the ESP's grubenv files. */
function grubNextBootSlot(disk) {
  const espFile = (path) => {
    try {
      return execFileSync('mtype', ['-i', `${disk}@@${MIB}`, `::${path}`], {
        env: { ...process.env, MTOOLS_SKIP_CHECK: '1' },
        stdio: ['ignore', 'pipe', 'ignore'],
      });
    } catch {
      return null; // missing or unreadable: what GRUB's load_env also does without
    }
  };
  const env = espFile(protocol.GRUB_ENV_PATH);
  const committed = espFile(protocol.GRUB_COMMITTED_ENV_PATH);
  const vars = (env && protocol.parseGrubEnv(env)) ?? {};
  const committedSlot = committed
    ? protocol.parseGrubEnv(committed)?.[protocol.GRUB_COMMITTED_VAR]
    : undefined;
  return protocol.decideGrubBoot(vars, committedSlot).slot;
}

/** The slot U-Boot boots at the next power-on: the boot script's decision on the valid env copy. */
function ubootNextBootSlot(disk) {
  // the real fw_printenv picks the copy U-Boot would (CRC, then the newer flag)
  const config = join(dirname(disk), 'fw_env.host.config');
  writeFileSync(
    config,
    UBOOT_ENV_DISK_OFFSETS.map(
      (at) => `${disk} 0x${at.toString(16)} 0x${UBOOT_ENV_SIZE.toString(16)}\n`,
    ).join(''),
  );
  const out = execFileSync('fw_printenv', ['-c', config], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
  const vars = Object.fromEntries(
    out
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  return protocol.decideUbootBoot(vars).slot;
}

async function deploymentState(ctx, id) {
  const deps = await ctx.server.deployments(id);
  return deps[0]?.state ?? 'pending';
}

async function main() {
  for (const arch of archs) {
    let ctx;
    try {
      ctx = await prepare(arch);
      await runScenarios(ctx);
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
