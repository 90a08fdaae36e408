import type { Static, TSchema } from '@sinclair/typebox';
import { type TypeCheck, TypeCompiler } from '@sinclair/typebox/compiler';
import { parseJson } from './canonical-json.js';
import { FlotillaError } from './errors.js';
import { LIMITS } from './limits.js';
import {
  ConnectionStatusMessage,
  DeviceCommand,
  DeviceEventMessage,
  DeviceStateMessage,
  InventoryMessage,
  SCHEMA_VERSION,
} from './schemas.js';

const compiled = new WeakMap<TSchema, TypeCheck<TSchema>>();

function checkerFor<T extends TSchema>(schema: T): TypeCheck<T> {
  let c = compiled.get(schema);
  if (!c) {
    c = TypeCompiler.Compile(schema);
    compiled.set(schema, c);
  }
  return c as TypeCheck<T>;
}

/** Checks a value against a schema; throws FLOTILLA_ERR_SCHEMA naming the first bad field. */
export function validate<T extends TSchema>(schema: T, value: unknown, what = 'document'): Static<T> {
  const checker = checkerFor(schema);
  if (checker.Check(value)) return value;
  if (
    value &&
    typeof value === 'object' &&
    'schemaVersion' in value &&
    (value as { schemaVersion: unknown }).schemaVersion !== SCHEMA_VERSION
  ) {
    throw new FlotillaError(
      'FLOTILLA_ERR_SCHEMA_VERSION',
      `${what} has schemaVersion ${String((value as { schemaVersion: unknown }).schemaVersion)}, expected ${SCHEMA_VERSION}`,
    );
  }
  const first = checker.Errors(value).First();
  throw new FlotillaError(
    'FLOTILLA_ERR_SCHEMA',
    `${what}${first ? ` at '${first.path || '/'}': ${first.message}` : ''}`,
  );
}

export function isValid<T extends TSchema>(schema: T, value: unknown): value is Static<T> {
  return checkerFor(schema).Check(value);
}

/** Parses untrusted bytes (bounded, strict) and validates them in one step. */
export function parseAndValidate<T extends TSchema>(
  schema: T,
  bytes: Uint8Array | string,
  what: string,
  maxBytes: number = LIMITS.maxDocumentBytes,
): Static<T> {
  return validate(schema, parseJson(bytes, { maxBytes }), what);
}

export const DEVICE_CHANNEL_SCHEMAS = {
  state: DeviceStateMessage,
  events: DeviceEventMessage,
  inventory: InventoryMessage,
  status: ConnectionStatusMessage,
  commands: DeviceCommand,
} as const;
export type DeviceChannel = keyof typeof DEVICE_CHANNEL_SCHEMAS;

/** Decodes one MQTT payload of a device channel; throws a FlotillaError with the reason. */
export function decodeDeviceMessage<C extends DeviceChannel>(
  channel: C,
  payload: Uint8Array | string,
): Static<(typeof DEVICE_CHANNEL_SCHEMAS)[C]> {
  const limit = channel === 'commands' ? LIMITS.maxDocumentBytes : LIMITS.maxMqttPayloadBytes;
  return parseAndValidate(DEVICE_CHANNEL_SCHEMAS[channel], payload, `${channel} message`, limit);
}
