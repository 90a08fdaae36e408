import type { FastifyReply, FastifyRequest } from 'fastify';
import { ServerError } from '../errors.js';
import type { ApiToken, TokenRole } from '../store/repos/tokens.js';
import type { Store } from '../store/store.js';

/** Who may call a route: `public` needs no token (devices, health, artifacts by hash). */
export type Access = 'public' | TokenRole;
const RANK: Record<TokenRole, number> = { viewer: 1, operator: 2, admin: 3 };

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: Access;
  }
  interface FastifyRequest {
    token?: ApiToken;
  }
}

/** The audit log's name for the caller. */
export function actorOf(req: FastifyRequest): string {
  return req.token ? `token:${req.token.name}(${req.token.id})` : 'anonymous';
}

/** onRequest hook: routes without an explicit access level need an admin token (safe default). */
export function authHook(store: Store, clock: () => number) {
  return async (req: FastifyRequest, _reply: FastifyReply): Promise<void> => {
    // The OpenAPI document and its UI describe the API; they hold no data.
    const docs = req.routeOptions.url?.startsWith('/docs') === true;
    const access = docs ? 'public' : (req.routeOptions.config?.access ?? 'admin');
    if (access === 'public') return;
    const header = req.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer ([A-Za-z0-9_-]{8,200})$/.exec(header) : null;
    const token = match ? store.tokens.authenticate(match[1]!, clock()) : undefined;
    if (!token) throw new ServerError('FLOTILLA_ERR_SERVER_UNAUTHENTICATED');
    if (RANK[token.role] < RANK[access])
      throw new ServerError('FLOTILLA_ERR_SERVER_FORBIDDEN', `${token.role} token, route needs ${access}`);
    req.token = token;
  };
}
