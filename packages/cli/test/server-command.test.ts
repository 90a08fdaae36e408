import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasMosquittoDynsec, type Mosquitto, startMosquitto } from '../../../test/e2e/mosquitto.js';
import {
  POSTGRES_MISSING,
  postgresBin,
  startTestPostgres,
  type TestPostgres,
} from '../../server/test/helpers/postgres.js';
import { type CliProcess, runFlotilla, startFlotilla } from './run-cli.js';

/** `flotilla server` as a process: its first-start output, its config file and its refusals. */
let work: string;
const running: CliProcess[] = [];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'flotilla-server-cmd-'));
});
afterAll(async () => {
  for (const p of running) p.child.kill('SIGKILL');
  await rm(work, { recursive: true, force: true });
});

/** A test here starts up to three servers in turn, each allowed a minute on a busy machine. */
const SERVER_STARTS_MS = 200_000;

const PORTS = ['--port', '0', '--mqtt-port', '0', '--log-level', 'warn', '--json'];

/** Starts the server; resolves with its JSON summary, or with the exit when it refuses to start. */
async function serve(args: string[]) {
  const p = startFlotilla(['server', ...args], {}, 60_000);
  running.push(p);
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const line = p.output.stdout.split('\n').find((l) => l.startsWith('{"ok":true'));
    if (line) {
      p.child.kill('SIGTERM');
      await p.done;
      return { started: true as const, summary: JSON.parse(line), stdout: p.output.stdout };
    }
    if (p.child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const r = await p.done;
  return { started: false as const, code: r.code, stdout: r.stdout, stderr: r.stderr };
}

describe('flotilla server: where the trust root came from', { timeout: SERVER_STARTS_MS }, () => {
  it('says a first start with --import-keys imported them, and a restart with the same set uses what is there', async () => {
    const keys = join(work, 'ops-keys');
    expect(runFlotilla(['keys', 'init', '--dir', keys]).code).toBe(0);
    const dataDir = join(work, 'imported');
    const first = await serve(['--data-dir', dataDir, '--import-keys', keys, ...PORTS]);
    expect(first.started && first.summary.trustRoot.origin).toBe('imported');
    expect(first.started && first.summary.trustRoot.text).toContain(keys);
    const again = await serve(['--data-dir', dataDir, '--import-keys', keys, ...PORTS]);
    expect(again.started && again.summary.trustRoot.origin).toBe('existing');
  });

  it('says a plain first start made its own root (bundles signed elsewhere will not match) and where its root key is, to move offline', async () => {
    const dataDir = join(work, 'plain');
    const r = await serve(['--data-dir', dataDir, ...PORTS]);
    if (!r.started) throw new Error(`a plain first start did not start: ${r.stderr}${r.stdout}`);
    const { summary } = r;
    expect(summary.trustRoot.origin).toBe('generated');
    expect(summary.trustRoot.text).toContain('--import-keys');
    // The new root key went to a directory outside the data dir, and the output says where and
    // that it must go offline; the server keeps only root.json and the online role keys.
    const offline: string = summary.offlineKeysDir;
    expect(offline).toBe(join(work, 'plain.offline-keys'));
    expect(existsSync(offline)).toBe(true);
    expect(readdirSync(offline).sort()).toEqual(
      ['delta.key', 'recovery.key', 'release.key', 'root.1.json', 'root.json', 'root.key'].sort(),
    );
    const served = readFileSync(summary.root, 'utf8');
    expect(readFileSync(join(offline, 'root.json'), 'utf8')).toBe(served);
    const rootKey = JSON.parse(readFileSync(join(offline, 'root.key'), 'utf8'));
    expect(rootKey.role).toBe('root');
    expect(JSON.parse(served).signed.roles.root.keyids).toEqual([rootKey.keyid]);
    expect(statSync(join(offline, 'root.key')).mode & 0o777).toBe(0o600);
    for (const name of readdirSync(summary.keysDir).filter((n) => n.endsWith('.key')))
      expect(JSON.parse(readFileSync(join(summary.keysDir, name), 'utf8')).role).not.toBe('root');
    expect(summary.trustRoot.text).toContain(`its root key is in ${offline}: move it offline`);
    // --json keeps stdout for the summary alone: the first start's key warning is a log on stderr.
    expect(r.stdout.trim().split('\n')).toHaveLength(1);
  });

  it('refuses --import-keys on a data dir that holds other keys instead of ignoring it without a word', async () => {
    const dataDir = join(work, 'own-keys');
    expect((await serve(['--data-dir', dataDir, ...PORTS])).started).toBe(true);
    const keys = join(work, 'other-keys');
    expect(runFlotilla(['keys', 'init', '--dir', keys]).code).toBe(0);
    const r = await serve(['--data-dir', dataDir, '--import-keys', keys, ...PORTS]);
    if (r.started) throw new Error('the server started with another trust root than --import-keys named');
    expect(r.code).toBe(1);
    const { error } = JSON.parse(r.stdout.trim());
    expect(error.code).toBe('FLOTILLA_ERR_SERVER_KEYS_CONFLICT');
    expect(error.hint).toContain('start with a new --data-dir');
  });
});

describe('flotilla server --config FILE', { timeout: SERVER_STARTS_MS }, () => {
  it('starts from the file, resolving its paths from the file, and a flag on the command line wins', async () => {
    const dir = join(work, 'etc');
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir);
    const config = join(dir, 'server.json');
    await writeFile(config, JSON.stringify({ dataDir: 'data', port: 0, mqttPort: 0, logLevel: 'warn' }));
    const fromFile = await serve(['--config', config, '--json']);
    expect(fromFile.started && fromFile.summary.dataDir).toBe(join(dir, 'data'));
    const overridden = await serve(['--config', config, '--data-dir', join(work, 'flag-data'), '--json']);
    expect(overridden.started && overridden.summary.dataDir).toBe(join(work, 'flag-data'));
  });

  it('refuses a bad field with a coded error naming the field', async () => {
    const config = join(work, 'bad.json');
    await writeFile(config, JSON.stringify({ port: 'eighty' }));
    const bad = runFlotilla(['server', '--config', config]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('FLOTILLA_ERR_CLI_CONFIG');
    expect(bad.stderr).toContain('"port"');
    await writeFile(config, JSON.stringify({ prot: 8080 }));
    const unknown = runFlotilla(['server', '--config', config]);
    expect(unknown.stderr).toContain('field "prot"');
    await writeFile(config, JSON.stringify({ trustProxy: ['nginx.local'] }));
    const proxy = runFlotilla(['server', '--config', config]);
    expect(proxy.stderr).toContain('field "trustProxy.0"');
    const flag = runFlotilla(['server', '--trust-proxy', '127.0.0.1,every-host']);
    expect(flag.code).not.toBe(0);
    expect(flag.stderr).toContain('FLOTILLA_ERR_CLI_USAGE');
  });

  it('says a missing config file is not found (not an internal error)', () => {
    const r = runFlotilla(['server', '--config', join(work, 'nope.json')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('FLOTILLA_ERR_CLI_CONFIG_NOT_FOUND');
  });
});

describe('the example server config shipped with the systemd unit', () => {
  it('passes the config schema', async () => {
    const { loadServerConfig } = await import('../src/server-config.js');
    const example = new URL('../../server/systemd/server.json', import.meta.url).pathname;
    expect(loadServerConfig(example)).toMatchObject({ port: 8080, importKeys: '/etc/flotilla/server-keys' });
  });

  it('and the cluster node example (PostgreSQL, node id, Redis, behind nginx) passes it too', async () => {
    const { loadServerConfig } = await import('../src/server-config.js');
    const example = new URL('../../server/systemd/server-cluster.json', import.meta.url).pathname;
    expect(loadServerConfig(example)).toMatchObject({
      database: expect.stringMatching(/^postgres:\/\//),
      nodeId: 'node-1',
      redis: expect.stringMatching(/^redis:\/\//),
      mqttProxyProtocol: true,
    });
  });
});

describe('flotilla server: artifacts behind nginx', { timeout: SERVER_STARTS_MS }, () => {
  it('says where offers send devices for artifacts and that nginx sends the bytes (flags or config file)', async () => {
    const config = join(work, 'nginx.json');
    await writeFile(
      config,
      JSON.stringify({
        artifactBaseUrl: 'https://dl.example.test/',
        artifactAccelRedirect: '/_flotilla/artifacts/',
      }),
    );
    const r = await serve(['--config', config, '--data-dir', join(work, 'behind-nginx'), ...PORTS]);
    expect(r.started && r.summary.artifacts).toEqual({
      baseUrl: 'https://dl.example.test',
      accelRedirect: '/_flotilla/artifacts/',
    });
    const plain = await serve(['--data-dir', join(work, 'behind-nginx'), ...PORTS]);
    expect(plain.started && plain.summary.artifacts).toEqual({
      baseUrl: plain.summary.api,
      accelRedirect: null,
    });
  });

  it('refuses a bad --artifact-accel-redirect or --artifact-base-url with FLOTILLA_ERR_SERVER_ARTIFACT_CONFIG, touching no data dir', () => {
    const dataDir = join(work, 'never-made');
    for (const flag of [
      ['--artifact-accel-redirect', '_flotilla/artifacts'],
      ['--artifact-accel-redirect', '/_flotilla/../keys/'],
      ['--artifact-base-url', 'ftp://dl.example.test'],
      ['--artifact-base-url', 'https://dl.example.test/?x=1'],
    ]) {
      const r = runFlotilla(['server', '--data-dir', dataDir, ...PORTS, ...flag]);
      expect(r.code, flag.join(' ')).toBe(1);
      const { error } = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
      expect(error.code).toBe('FLOTILLA_ERR_SERVER_ARTIFACT_CONFIG');
      expect(error.hint).toContain('docs/cluster.md');
    }
    expect(existsSync(dataDir)).toBe(false);
  });
});

describe('flotilla server --redis', { timeout: SERVER_STARTS_MS }, () => {
  it('does not start when Redis is unreachable (flag or config file): FLOTILLA_ERR_SERVER_REDIS with a hint', async () => {
    // A port nothing listens on: bound, then closed.
    const { createServer } = await import('node:net');
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const config = join(work, 'redis.json');
    await writeFile(config, JSON.stringify({ redis: `redis://:secret@127.0.0.1:${port}` }));
    for (const args of [
      ['--redis', `redis://127.0.0.1:${port}`],
      ['--config', config],
    ]) {
      const r = await serve([...args, '--data-dir', join(work, 'redis-down'), ...PORTS]);
      expect(r.started, args.join(' ')).toBe(false);
      const { error } = JSON.parse(r.stdout!.trim().split('\n').at(-1)!);
      expect(error.code).toBe('FLOTILLA_ERR_SERVER_REDIS');
      expect(error.hint).toContain('--redis');
      expect(r.stdout).not.toContain('secret');
    }
  });

  it('refuses --redis with an external broker or without a redis:// URL', async () => {
    const password = join(work, 'broker-password');
    await writeFile(password, 'TEST-ONLY\n', { mode: 0o600 });
    for (const [args, says] of [
      [
        [
          '--redis',
          'redis://127.0.0.1:6379',
          '--broker',
          'mqtt://127.0.0.1:1883',
          '--broker-password-file',
          password,
        ],
        'drop --broker',
      ],
      [['--redis', 'http://127.0.0.1:6379'], 'give redis://host:port'],
    ] as const) {
      const r = runFlotilla(['server', '--data-dir', join(work, 'never'), ...PORTS, ...args]);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stdout + r.stderr).toContain('FLOTILLA_ERR_CLI_USAGE');
      expect(r.stdout + r.stderr).toContain(says);
    }
    expect(existsSync(join(work, 'never'))).toBe(false);
  });
});

if (!postgresBin) console.warn(POSTGRES_MISSING);

describe('flotilla server --database', { timeout: SERVER_STARTS_MS }, () => {
  it('refuses a --database that is not a postgres:// URL, before anything is made', () => {
    const r = runFlotilla([
      'server',
      '--data-dir',
      join(work, 'never-db'),
      ...PORTS,
      '--database',
      'sqlite:///x.db',
    ]);
    expect(r.code).toBe(1);
    expect(r.stdout + r.stderr).toContain('FLOTILLA_ERR_CLI_USAGE');
    expect(r.stdout + r.stderr).toContain('postgres://');
    expect(existsSync(join(work, 'never-db'))).toBe(false);
  });

  describe.skipIf(!postgresBin)('on a real PostgreSQL', () => {
    let pgsrv: TestPostgres;
    beforeAll(async () => {
      pgsrv = await startTestPostgres();
    });
    afterAll(async () => {
      await pgsrv?.destroy();
    });

    it('starts on the shared store and says so: store postgres and this node (flag or config file)', async () => {
      const config = join(work, 'cluster.json');
      await writeFile(config, JSON.stringify({ database: pgsrv.url, nodeId: 'cfg-node' }));
      for (const [args, node] of [
        [['--database', pgsrv.url, '--node-id', 'flag-node'], 'flag-node'],
        [['--config', config], 'cfg-node'],
      ] as const) {
        const r = await serve([...args, '--data-dir', join(work, `pg-${node}`), ...PORTS]);
        expect(r.started, args.join(' ')).toBe(true);
        expect(r.started && r.summary).toMatchObject({ store: 'postgres', node });
        // The data directory keeps the keys and artifacts; the fleet is in PostgreSQL.
        expect(existsSync(join(work, `pg-${node}`, 'server.db'))).toBe(false);
      }
    });
  });
});

describe.skipIf(!hasMosquittoDynsec)('flotilla server --broker (Mosquitto 2, dynamic security)', () => {
  let mosquitto: Mosquitto;
  beforeAll(async () => {
    mosquitto = await startMosquitto();
  });
  afterAll(async () => {
    await mosquitto?.stop();
  });

  it('joins the broker named in the config file with the password from its file, and opens no MQTT port of its own', async () => {
    const dir = join(work, 'etc-broker');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'broker-password'), `${mosquitto.password}\n`, { mode: 0o600 });
    const config = join(dir, 'server.json');
    await writeFile(
      config,
      JSON.stringify({
        dataDir: 'data',
        port: 0,
        logLevel: 'warn',
        broker: mosquitto.url,
        brokerUsername: mosquitto.user,
        brokerPasswordFile: 'broker-password',
      }),
    );
    const r = await serve(['--config', config, '--json']);
    expect(r.started, JSON.stringify(r)).toBe(true);
    expect(r.started && r.summary.mqtt).toBeNull();
  });

  it('refuses a wrong broker password with FLOTILLA_ERR_SERVER_BROKER instead of starting without devices', async () => {
    const file = join(work, 'wrong-broker-password');
    await writeFile(file, 'TEST-ONLY-wrong\n');
    const r = await serve([
      '--data-dir',
      join(work, 'wrong-broker'),
      '--broker',
      mosquitto.url,
      '--broker-password-file',
      file,
      ...PORTS,
    ]);
    expect(r.started).toBe(false);
    expect(!r.started && `${r.stdout}${r.stderr}`).toContain('FLOTILLA_ERR_SERVER_BROKER');
  });
});

describe('flotilla server --broker: bad input', () => {
  it('refuses --broker without --broker-password-file', () => {
    const r = runFlotilla(['server', '--broker', 'mqtt://127.0.0.1:1', '--data-dir', join(work, 'no-pw')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('FLOTILLA_ERR_CLI_USAGE');
    expect(r.stderr).toContain('--broker-password-file');
  });

  it('refuses a --broker that is not an mqtt:// or mqtts:// URL', () => {
    const r = runFlotilla(['server', '--broker', 'http://127.0.0.1:1', '--data-dir', join(work, 'bad-url')]);
    expect(r.stderr).toContain('FLOTILLA_ERR_CLI_USAGE');
  });
});
