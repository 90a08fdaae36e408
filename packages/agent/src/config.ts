import { readFile } from 'node:fs/promises';
import { MAX_BOOTLIMIT, parseJson, validate } from '@flotilla/protocol';
import { type Static, Type } from '@sinclair/typebox';
import { AgentError } from './errors.js';
import { STATE_REPORT } from './limits.js';

const Path = Type.String({ minLength: 1, maxLength: 4096 });
const Slot = Type.Object(
  { path: Path, size: Type.Optional(Type.Integer({ minimum: 1 })) },
  { additionalProperties: false },
);

/** The agent's config file (JSON), e.g. /etc/flotilla/agent.json. docs/agent.md shows a full example. */
export const AgentConfigFile = Type.Object(
  {
    deviceId: Type.String({ pattern: '^[A-Za-z0-9._-]{1,64}$' }),
    hardware: Type.String({ minLength: 1, maxLength: 64 }),
    dataDir: Path,
    trustDir: Path,
    factoryReleaseFile: Type.Optional(Path),
    server: Type.Optional(
      Type.Object(
        {
          mqttUrl: Type.String({ pattern: '^(mqtt|mqtts|ws|wss)://' }),
          caFile: Type.Optional(Path),
          deviceKeyFile: Type.Optional(Path),
          provisioningTokenFile: Type.Optional(Path),
          /** The MQTT password the server issued (external broker); replaces the signed key login. */
          mqttPasswordFile: Type.Optional(Path),
          artifactTokenFile: Type.Optional(Path),
          /** The server's root metadata (`<rootUrl>/<N>.json`), fetched on connect; offers also name it. */
          rootUrl: Type.Optional(Type.String({ pattern: '^https?://', maxLength: 2048 })),
          stateIntervalMs: Type.Optional(
            Type.Integer({ minimum: STATE_REPORT.minIntervalMs, maximum: STATE_REPORT.maxIntervalMs }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    slots: Type.Object({ A: Slot, B: Slot }, { additionalProperties: false }),
    bootloader: Type.Union([
      Type.Object(
        {
          kind: Type.Literal('uboot'),
          fwEnvConfig: Path,
          cmdline: Type.Optional(Path),
        },
        { additionalProperties: false },
      ),
      Type.Object(
        {
          kind: Type.Literal('grub'),
          envFile: Path,
          bootlimit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_BOOTLIMIT })),
          cmdline: Type.Optional(Path),
        },
        { additionalProperties: false },
      ),
      Type.Object({ kind: Type.Literal('file'), path: Path }, { additionalProperties: false }),
    ]),
    reboot: Type.Object(
      { command: Type.Array(Type.String(), { minItems: 1 }) },
      { additionalProperties: false },
    ),
    health: Type.Optional(
      Type.Object(
        {
          checks: Type.Array(
            Type.Union([
              Type.Object({
                kind: Type.Literal('command'),
                argv: Type.Array(Type.String(), { minItems: 1 }),
              }),
              Type.Object({ kind: Type.Literal('systemd'), unit: Type.String({ minLength: 1 }) }),
              Type.Object({
                kind: Type.Literal('http'),
                url: Type.String({ pattern: '^https?://' }),
                status: Type.Optional(Type.Integer()),
              }),
              Type.Object({ kind: Type.Literal('server') }),
            ]),
            { maxItems: 32 },
          ),
        },
        { additionalProperties: false },
      ),
    ),
    hooksDir: Type.Optional(Path),
    updateLock: Type.Optional(
      Type.Object(
        { kind: Type.Union([Type.Literal('flock'), Type.Literal('pidfile')]), path: Path },
        { additionalProperties: false },
      ),
    ),
    deltaFallbackToFull: Type.Optional(Type.Boolean()),
    driftCheck: Type.Optional(Type.Boolean()),
    tags: Type.Optional(Type.Array(Type.String({ maxLength: 64 }), { maxItems: 32 })),
    limits: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    logLevel: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);
export type AgentConfigFile = Static<typeof AgentConfigFile>;

export async function loadConfigFile(path: string): Promise<AgentConfigFile> {
  let text: Buffer;
  try {
    text = await readFile(path);
  } catch (cause) {
    const missing = (cause as NodeJS.ErrnoException).code === 'ENOENT';
    throw new AgentError(
      missing ? 'FLOTILLA_ERR_AGENT_CONFIG_NOT_FOUND' : 'FLOTILLA_ERR_AGENT_CONFIG',
      `cannot read ${path}`,
      {
        cause,
      },
    );
  }
  try {
    return validate(AgentConfigFile, parseJson(text, { maxBytes: 256 * 1024 }), 'agent config');
  } catch (cause) {
    throw new AgentError('FLOTILLA_ERR_AGENT_CONFIG', `${path}: ${(cause as Error).message}`, { cause });
  }
}
