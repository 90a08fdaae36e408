import { DeviceId, SemVer, Sha256 } from '@flotilla/protocol';
import { Type } from '@sinclair/typebox';

/** Request schemas shared by the routes (message and document schemas come from protocol). */
export const IdParams = Type.Object({ id: DeviceId }, { additionalProperties: false });
export const Sha256Params = Type.Object({ sha256: Sha256 }, { additionalProperties: false });
/** Release versions in paths and bodies follow protocol's one grammar (SemVer). */
export const VersionParams = Type.Object({ version: SemVer }, { additionalProperties: false });
export const RolloutParams = Type.Object(
  { id: Type.String({ pattern: '^ro_[0-9a-f]{16}$' }) },
  { additionalProperties: false },
);
export const Paging = {
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
  offset: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000_000, default: 0 })),
};
export const Label = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9._:-]+$' });
export const Channel = Type.Union([Type.Literal('dev'), Type.Literal('staging'), Type.Literal('prod')]);
export const ErrorResponse = Type.Object({
  error: Type.Object({ code: Type.String(), message: Type.String(), hint: Type.Optional(Type.String()) }),
});
export const EmptyBody = Type.Object({}, { additionalProperties: false });

/** Action routes (accept, pause, ...) take an optional JSON body: a missing one counts as `{}`. */
export async function bodyDefaultsToEmpty(req: { body: unknown }): Promise<void> {
  if (req.body === undefined || req.body === null) req.body = {};
}
