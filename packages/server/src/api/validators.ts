import { AjvCompiler } from '@fastify/ajv-compiler';
import type { FastifyServerOptions } from 'fastify';

/** Options shared by both validators: unknown properties are rejected (not dropped), defaults filled in. */
const BASE = { removeAdditional: false, useDefaults: true, allErrors: false, strict: false } as const;

type ValidatorFactory = NonNullable<
  NonNullable<NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']>['buildValidator']
>;

/**
 * Two ajv instances. Query strings, path parameters and headers arrive as text, so they are
 * coerced (`?limit=5` → 5, one `?compatible=x` → ['x']). JSON bodies already carry types: a
 * string where a boolean or an array belongs is a client bug, and coercing it changes meaning
 * (`{"dryRun": ""}` used to become `false` and prune for real) — bodies are validated exactly.
 */
export function validatorFactory(): ValidatorFactory {
  const pool = AjvCompiler();
  return ((externalSchemas: Record<string, unknown>, serverOptions: Record<string, unknown> = {}) => {
    const build = (coerceTypes: 'array' | false) =>
      pool(
        externalSchemas as never,
        {
          ...serverOptions,
          customOptions: { ...BASE, coerceTypes },
        } as never,
      );
    const text = build('array');
    const json = build(false);
    return (route: { httpPart?: string }) => (route.httpPart === 'body' ? json : text)(route as never);
  }) as unknown as ValidatorFactory;
}
