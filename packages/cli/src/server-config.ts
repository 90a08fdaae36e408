import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseJson } from '@flotilla/protocol';
import { type Static, Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { CliError } from './errors.js';

const Port = Type.Integer({ minimum: 0, maximum: 65535 });
const Path = Type.String({ minLength: 1, maxLength: 4096 });

/**
 * `flotilla server --config FILE` (e.g. /etc/flotilla/server.json): the same settings as the
 * flags, named like them in camelCase. Flags given on the command line win over the file; relative
 * paths in the file are relative to the file's directory.
 */
export const ServerConfigFile = Type.Object(
  {
    dataDir: Type.Optional(Path),
    host: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
    port: Type.Optional(Port),
    mqttPort: Type.Optional(Port),
    mqttsPort: Type.Optional(Port),
    mqttProxyProtocol: Type.Optional(Type.Boolean()),
    tlsCert: Type.Optional(Path),
    tlsKey: Type.Optional(Path),
    importKeys: Type.Optional(Path),
    offlineKeysDir: Type.Optional(Path),
    devKeys: Type.Optional(Type.Boolean()),
    metricsTokenFile: Type.Optional(Path),
    autoAccept: Type.Optional(Type.Boolean()),
    broker: Type.Optional(Type.String({ pattern: '^mqtts?://', maxLength: 2048 })),
    brokerUsername: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
    brokerPasswordFile: Type.Optional(Path),
    brokerCaFile: Type.Optional(Path),
    redis: Type.Optional(Type.String({ pattern: '^rediss?://', maxLength: 2048 })),
    database: Type.Optional(Type.String({ pattern: '^postgres(ql)?://', maxLength: 2048 })),
    nodeId: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$' })),
    publicUrl: Type.Optional(Type.String({ pattern: '^https?://', maxLength: 2048 })),
    artifactBaseUrl: Type.Optional(Type.String({ pattern: '^https?://', maxLength: 2048 })),
    artifactAccelRedirect: Type.Optional(Type.String({ pattern: '^/.*/$', maxLength: 200 })),
    trustProxy: Type.Optional(
      Type.Array(Type.String({ pattern: '^[0-9a-fA-F.:]+(/[0-9]{1,3})?$', maxLength: 64 }), {
        minItems: 1,
        maxItems: 64,
      }),
    ),
    logLevel: Type.Optional(
      Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l))),
    ),
  },
  { additionalProperties: false },
);
export type ServerConfigFile = Static<typeof ServerConfigFile>;

const PATH_FIELDS = [
  'dataDir',
  'tlsCert',
  'tlsKey',
  'importKeys',
  'offlineKeysDir',
  'metricsTokenFile',
  'brokerPasswordFile',
  'brokerCaFile',
] as const;

/** Reads and validates the config file; every refusal names the file and the field. */
export function loadServerConfig(path: string): ServerConfigFile {
  let text: Buffer;
  try {
    text = readFileSync(path);
  } catch (cause) {
    const missing = (cause as NodeJS.ErrnoException).code === 'ENOENT';
    throw new CliError(
      missing ? 'FLOTILLA_ERR_CLI_CONFIG_NOT_FOUND' : 'FLOTILLA_ERR_CLI_CONFIG',
      `${path}: ${(cause as Error).message}`,
      { cause },
    );
  }
  let value: unknown;
  try {
    value = parseJson(text, { maxBytes: 64 * 1024 });
  } catch (cause) {
    throw new CliError('FLOTILLA_ERR_CLI_CONFIG', `${path}: not JSON (${(cause as Error).message})`, {
      cause,
    });
  }
  const first = Value.Errors(ServerConfigFile, value).First();
  if (first) {
    const field = first.path.replace(/^\//, '').replaceAll('/', '.') || '(top level)';
    throw new CliError('FLOTILLA_ERR_CLI_CONFIG', `${path}: field "${field}": ${first.message}`);
  }
  const config = { ...(value as ServerConfigFile) };
  for (const key of PATH_FIELDS) if (config[key]) config[key] = resolve(dirname(path), config[key]);
  return config;
}

/** Where a setting came from: commander's option value source (`cli`, `default`, `env`, …). */
export type OptionSource = (key: string) => string | undefined;

/**
 * The settings the server starts with: a flag typed on the command line, else the file's
 * value, else the flag's default. Numbers from the file become strings like flag values.
 */
export function mergeServerOptions<T extends Record<string, unknown>>(
  flags: T,
  source: OptionSource,
  file: ServerConfigFile,
): T {
  const merged: Record<string, unknown> = { ...flags };
  for (const [key, value] of Object.entries(file)) {
    if (source(key) === 'cli' || value === undefined) continue;
    merged[key] = typeof value === 'number' ? String(value) : value;
  }
  return merged as T;
}
