import type { FastifyPluginAsyncTypebox, TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { TSchema } from '@sinclair/typebox';
import type {
  FastifyBaseLogger,
  FastifyInstance,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerDefault,
} from 'fastify';
import type { ServerContext } from '../../context.js';
import { ErrorResponse } from '../schemas.js';

/** The API's fastify instance: request and reply types come from each route's TypeBox schemas. */
export type ApiInstance = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;

/** Every route file is one plugin, registered in app.ts with its prefix and the server context. */
export type RoutePlugin = FastifyPluginAsyncTypebox<{ ctx: ServerContext }>;

/**
 * A route's response schemas plus the error shape every failure has (see error-handler.ts), so
 * OpenAPI documents both. Responses serialise through their schema, which drops undeclared
 * properties: open shapes say `additionalProperties: true`.
 */
export function responses<Ok extends Record<number, TSchema>>(ok: Ok) {
  return { ...ok, '4xx': ErrorResponse, '5xx': ErrorResponse };
}
