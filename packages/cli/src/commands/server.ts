import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { CliError } from '../errors.js';
import { printResult } from '../output.js';
import { loadServerConfig, mergeServerOptions } from '../server-config.js';
import { describeTrustOrigin } from './trust-origin.js';

function port(text: string, what: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new CliError('FLOTILLA_ERR_CLI_USAGE', `${what} must be a port number`);
  return n;
}

function readInput(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (cause) {
    throw new CliError('FLOTILLA_ERR_CLI_INPUT', `${flag} ${path}: ${(cause as Error).message}`, { cause });
  }
}

const ADDRESS_OR_CIDR = /^[0-9a-fA-F.:]+(\/[0-9]{1,3})?$/;

/** `--trust-proxy a,b` (or the config file's list): each an IP address or a CIDR range. */
function proxyList(value: string | string[]): string[] {
  const list = (Array.isArray(value) ? value : value.split(',')).map((a) => a.trim()).filter(Boolean);
  const bad = list.find((a) => !ADDRESS_OR_CIDR.test(a));
  if (bad !== undefined || list.length === 0)
    throw new CliError(
      'FLOTILLA_ERR_CLI_USAGE',
      `--trust-proxy ${JSON.stringify(bad ?? value)} is not an IP address or CIDR range (e.g. 127.0.0.1,10.0.0.0/8)`,
    );
  return list;
}

/** `--broker` and its login: the server joins Mosquitto and manages device clients there (dynsec). */
function externalBroker(opts: {
  broker?: string;
  brokerUsername: string;
  brokerPasswordFile?: string;
  brokerCaFile?: string;
}) {
  if (!opts.broker) {
    if (opts.brokerPasswordFile || opts.brokerCaFile)
      throw new CliError(
        'FLOTILLA_ERR_CLI_USAGE',
        '--broker-password-file and --broker-ca-file need --broker URL',
      );
    return undefined;
  }
  if (!/^mqtts?:\/\/[^/]+/.test(opts.broker))
    throw new CliError(
      'FLOTILLA_ERR_CLI_USAGE',
      `--broker ${opts.broker}: give mqtt://host:port or mqtts://host:port`,
    );
  if (!opts.brokerPasswordFile)
    throw new CliError(
      'FLOTILLA_ERR_CLI_USAGE',
      "--broker needs --broker-password-file (the password of --broker-username, the broker's dynamic-security admin)",
    );
  const password = readInput(opts.brokerPasswordFile, '--broker-password-file').toString('utf8').trim();
  if (!password) throw new CliError('FLOTILLA_ERR_CLI_USAGE', `${opts.brokerPasswordFile} is empty`);
  return {
    kind: 'external' as const,
    connect: {
      url: opts.broker,
      username: opts.brokerUsername,
      password,
      ...(opts.brokerCaFile ? { ca: readInput(opts.brokerCaFile, '--broker-ca-file') } : {}),
    },
    mosquitto: 'dynsec' as const,
  };
}

/** Same default as @flotilla/server's DEFAULT_DATA_DIR; the server is loaded only when this command runs. */
const DEFAULT_DATA_DIR = join('.flotilla', 'server');

/** `flotilla server`: the whole control plane in one process (aedes + SQLite + local artifacts), no set-up. */
export function registerServerCommands(program: Command): void {
  const command = program
    .command('server')
    .description('run the Flotilla server: HTTP API, embedded MQTT broker, store, deltas, rollouts')
    .option('--config <file>', 'JSON config file (docs/install.md); flags given here win over it')
    .option('--data-dir <dir>', 'database, artifacts and keys', DEFAULT_DATA_DIR)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'HTTP API port (MQTT over WebSocket at /mqtt on it)', '8080')
    .option('--mqtt-port <port>', 'MQTT over TCP port', '1883')
    .option('--mqtts-port <port>', 'MQTT over TLS port (with --tls-cert/--tls-key)', '8883')
    .option(
      '--mqtt-proxy-protocol',
      'the MQTT port is reached only through a load balancer sending PROXY protocol v1 (nginx stream, docs/cluster.md)',
    )
    .option('--tls-cert <file>', 'PEM certificate: HTTPS for the API and MQTT over TLS')
    .option('--tls-key <file>', 'PEM private key of --tls-cert')
    .option(
      '--import-keys <dir>',
      'on first start, import root.json and the online role keys made by `flotilla keys init`',
    )
    .option(
      '--dev-keys',
      'TEST-ONLY: on first start make a throw-away key set and keep its root key in the data dir',
    )
    .option(
      '--offline-keys-dir <dir>',
      'on first start without --import-keys: where the new root keys go (default <data-dir>.offline-keys); move it offline',
    )
    .option('--auto-accept', 'accept new devices without an operator (default: they wait in pending)')
    .option('--public-url <url>', 'base URL devices download artifacts from (default: the API address)')
    .option(
      '--artifact-base-url <url>',
      'base URL of image and delta downloads signed into offers, e.g. nginx (default: --public-url)',
    )
    .option(
      '--artifact-accel-redirect <prefix>',
      'nginx internal location of <data-dir>/artifacts/ (e.g. /_flotilla/artifacts/): nginx sends authorised downloads',
    )
    .option(
      '--trust-proxy <addresses>',
      'comma-separated addresses/CIDRs of reverse proxies (nginx) whose X-Forwarded-For names the client',
    )
    .option(
      '--metrics-token-file <file>',
      'GET /metrics needs `Authorization: Bearer <the token in this file>` (or an API token)',
    )
    .option(
      '--broker <url>',
      'external MQTT broker (mqtt:// or mqtts://, Mosquitto 2 with its dynamic-security plugin; docs/cluster.md) instead of the embedded one',
    )
    .option(
      '--broker-username <name>',
      "the server's own broker user (a dynamic-security admin)",
      'flotilla-server',
    )
    .option('--broker-password-file <file>', 'file holding the password of --broker-username')
    .option('--broker-ca-file <file>', 'CA bundle to verify an mqtts:// broker')
    .option(
      '--redis <url>',
      'redis://host:port shared by several server nodes: embedded broker sessions, commands and login nonces (docs/server.md)',
    )
    .option(
      '--database <url>',
      'postgres://user@host:5432/db shared by several server nodes (password: PGPASSWORD or ~/.pgpass; docs/cluster.md); default SQLite in --data-dir',
    )
    .option('--node-id <name>', "this node's name among nodes sharing --database (default <hostname>-<pid>)")
    .option('--log-level <level>', 'pino log level', 'info')
    .option('--json', 'print the addresses as one JSON line')
    .action(
      async (opts: {
        config?: string;
        dataDir: string;
        host: string;
        port: string;
        mqttPort: string;
        mqttsPort: string;
        mqttProxyProtocol?: boolean;
        tlsCert?: string;
        tlsKey?: string;
        importKeys?: string;
        devKeys?: boolean;
        offlineKeysDir?: string;
        autoAccept?: boolean;
        publicUrl?: string;
        artifactBaseUrl?: string;
        artifactAccelRedirect?: string;
        trustProxy?: string | string[];
        metricsTokenFile?: string;
        broker?: string;
        brokerUsername: string;
        brokerPasswordFile?: string;
        brokerCaFile?: string;
        redis?: string;
        database?: string;
        nodeId?: string;
        logLevel: string;
        json?: boolean;
      }) => {
        // The file fills in what the command line does not say (flags win over the file).
        if (opts.config)
          Object.assign(
            opts,
            mergeServerOptions(
              opts,
              (key) => command.getOptionValueSource(key),
              loadServerConfig(resolve(opts.config)),
            ),
          );
        if (Boolean(opts.tlsCert) !== Boolean(opts.tlsKey))
          throw new CliError('FLOTILLA_ERR_CLI_USAGE', '--tls-cert and --tls-key go together');
        const tls =
          opts.tlsCert && opts.tlsKey
            ? { cert: readFileSync(opts.tlsCert), key: readFileSync(opts.tlsKey) }
            : undefined;
        if (opts.devKeys && (opts.importKeys || opts.offlineKeysDir))
          throw new CliError(
            'FLOTILLA_ERR_CLI_USAGE',
            '--dev-keys makes its own keys: drop --import-keys / --offline-keys-dir',
          );
        const broker = externalBroker(opts);
        if (opts.redis && (broker || !/^rediss?:\/\/[^/]+/.test(opts.redis)))
          throw new CliError(
            'FLOTILLA_ERR_CLI_USAGE',
            broker
              ? '--redis shares the embedded broker between nodes: drop --broker (an external broker shares itself)'
              : `--redis ${opts.redis}: give redis://host:port`,
          );
        if (opts.database && !/^postgres(ql)?:\/\//.test(opts.database))
          throw new CliError(
            'FLOTILLA_ERR_CLI_USAGE',
            '--database takes postgres://user@host:5432/database (SQLite needs no option: it is server.db in --data-dir)',
          );
        const dataDir = resolve(opts.dataDir);
        const keysExisted = existsSync(join(dataDir, 'keys', 'root.json'));
        // Loaded here, not at the top: every other command starts without fastify, aedes and SQLite.
        const { startServer } = await import('@flotilla/server');
        const server = await startServer({
          dataDir,
          host: opts.host,
          port: port(opts.port, '--port'),
          mqttPort: port(opts.mqttPort, '--mqtt-port'),
          mqttsPort: tls ? port(opts.mqttsPort, '--mqtts-port') : null,
          ...(opts.mqttProxyProtocol ? { mqttProxyProtocol: true } : {}),
          ...(tls ? { tls } : {}),
          ...(opts.importKeys ? { importKeysFrom: resolve(opts.importKeys) } : {}),
          ...(opts.devKeys ? { devKeys: true } : {}),
          ...(opts.offlineKeysDir ? { offlineKeysDir: resolve(opts.offlineKeysDir) } : {}),
          autoAccept: Boolean(opts.autoAccept),
          ...(opts.publicUrl ? { publicUrl: opts.publicUrl } : {}),
          ...(opts.artifactBaseUrl ? { artifactBaseUrl: opts.artifactBaseUrl } : {}),
          ...(opts.artifactAccelRedirect ? { artifactAccelRedirect: opts.artifactAccelRedirect } : {}),
          ...(opts.trustProxy ? { trustProxy: proxyList(opts.trustProxy) } : {}),
          ...(opts.metricsTokenFile
            ? { metricsToken: readFileSync(opts.metricsTokenFile, 'utf8').trim() }
            : {}),
          ...(broker ? { broker, mqttPort: null } : {}),
          ...(opts.redis ? { redis: opts.redis } : {}),
          ...(opts.database ? { database: opts.database } : {}),
          ...(opts.nodeId ? { nodeId: opts.nodeId } : {}),
          logLevel: opts.logLevel,
          logToStderr: Boolean(opts.json),
        });
        const keys = server.ctx.keys;
        const trustRoot = describeTrustOrigin({
          keysDir: keys.dir,
          existedBefore: keysExisted,
          importedFrom: opts.importKeys ? resolve(opts.importKeys) : null,
          holdsRootKeys: keys.holdsRootKeys,
          offlineKeysDir: keys.offlineKeysDir ?? null,
          rootVersion: keys.rootMeta.version,
        });
        const summary = {
          ok: true,
          api: server.addresses.api,
          docs: `${server.addresses.api}/docs`,
          dashboard: server.addresses.dashboard,
          mqtt: server.addresses.mqtt,
          mqtts: server.addresses.mqtts,
          ws: server.addresses.ws,
          // Where offers send devices for images and deltas, and whether nginx sends the bytes.
          artifacts: {
            baseUrl: server.ctx.artifactDelivery.baseUrl ?? opts.publicUrl ?? server.addresses.api,
            accelRedirect: server.ctx.artifactDelivery.accelPrefix,
          },
          dataDir,
          keysDir: keys.dir,
          root: join(keys.dir, 'root.json'),
          keysCreated: keys.created,
          devKeys: keys.holdsRootKeys,
          offlineKeysDir: keys.offlineKeysDir,
          trustRoot,
          adminTokenFile: server.bootstrapToken ? join(dataDir, 'admin-token') : null,
          node: server.ctx.cluster.node,
          store: server.ctx.cluster.store,
        };
        // Listening for the stop before saying "running": a supervisor may send it at once.
        const stopped = new Promise<void>((done) => {
          const stop = () => {
            process.off('SIGINT', stop);
            process.off('SIGTERM', stop);
            void server.close().then(done, done);
          };
          process.on('SIGINT', stop);
          process.on('SIGTERM', stop);
        });
        printResult(Boolean(opts.json), summary, () =>
          [
            `flotilla server running (data in ${dataDir})`,
            `  API        ${summary.api}   (OpenAPI: ${summary.docs})`,
            `  dashboard  ${summary.dashboard}`,
            opts.broker
              ? `  MQTT       external broker ${opts.broker} (devices log in there with the password the server issues)`
              : `  MQTT       ${summary.mqtt ?? 'off'}${summary.mqtts ? `   TLS: ${summary.mqtts}` : ''}   WebSocket: ${summary.ws}`,
            `  artifacts  ${summary.artifacts.baseUrl}${summary.artifacts.accelRedirect ? `   (sent by nginx: X-Accel-Redirect ${summary.artifacts.accelRedirect})` : ''}`,
            `  store      ${summary.store === 'postgres' ? `PostgreSQL (shared; this node: ${summary.node})` : `SQLite ${join(dataDir, 'server.db')}`}`,
            `  keys       ${keys.dir}${keys.created ? ' (created now; private keys mode 0600)' : ''}`,
            `  trust root ${trustRoot.text}`,
            '             ship root.json on every device',
            ...(keys.offlineKeysDir
              ? [
                  `  ROOT KEYS  ${keys.offlineKeysDir} (made now; the server does not keep them)`,
                  '             MOVE THIS DIRECTORY OFFLINE NOW: it is needed only to rotate the trust root',
                ]
              : []),
            ...(keys.holdsRootKeys
              ? [
                  '  TEST-ONLY  dev keys: the root private key is online in the data dir; never use for a real fleet',
                ]
              : []),
            ...(server.bootstrapToken
              ? [`  admin API token written to ${summary.adminTokenFile} (mode 0600)`]
              : []),
          ].join('\n'),
        );
        await stopped;
      },
    );
}
