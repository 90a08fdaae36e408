import type { FastifyReply, FastifyRequest } from 'fastify';
import { ServerError } from '../errors.js';
import type { FailedLoginLimiter } from '../security/failed-logins.js';
import type { ApiToken, TokenRole } from '../store/repos/tokens.js';
import type { Store } from '../store/store.js';

/**
 * Who may call a route: `public` needs no token (devices, health, the dashboard's files);
 * `route` means the handler authorises by itself (artifacts: a signed URL or a token).
 */
export type Access = 'public' | 'route' | TokenRole;
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

/** The token in `Authorization: Bearer <token>` (the scheme is case-insensitive, RFC 7235). */
export function bearerToken(header: unknown): string | null {
  const match = typeof header === 'string' ? /^bearer +([A-Za-z0-9_-]{8,200})$/i.exec(header.trim()) : null;
  return match ? match[1]! : null;
}

export interface TokenAuth {
  store: Store;
  clock: () => number;
  failedLogins: FailedLoginLimiter;
}

/**
 * Checks the request's API token against `access` and sets `req.token`. A source address with too
 * many failed logins gets FLOTILLA_ERR_SERVER_RATE_LIMITED (429, Retry-After) before its token is
 * even looked up; a wrong or missing token counts as a failure, a valid one never does.
 */
export async function requireToken(
  auth: TokenAuth,
  req: FastifyRequest,
  reply: FastifyReply,
  access: TokenRole,
): Promise<void> {
  const now = auth.clock();
  const source = req.ip;
  const wait = auth.failedLogins.blockedFor(source, now);
  if (wait > 0) {
    void reply.header('retry-after', Math.ceil(wait / 1000));
    throw new ServerError(
      'FLOTILLA_ERR_SERVER_RATE_LIMITED',
      `${source}: retry in ${Math.ceil(wait / 1000)} s`,
    );
  }
  const secret = bearerToken(req.headers.authorization);
  const token = secret ? await auth.store.tokens.authenticate(secret, now) : undefined;
  if (!token) {
    auth.failedLogins.fail(source, now);
    throw new ServerError('FLOTILLA_ERR_SERVER_UNAUTHENTICATED');
  }
  if (RANK[token.role] < RANK[access])
    throw new ServerError('FLOTILLA_ERR_SERVER_FORBIDDEN', `${token.role} token, route needs ${access}`);
  req.token = token;
}

/** onRequest hook: routes without an explicit access level need an admin token (safe default). */
export function authHook(auth: TokenAuth) {
  return async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    // The OpenAPI document and its UI describe the API; they hold no data.
    const docs = req.routeOptions.url?.startsWith('/docs') === true;
    const access = docs ? 'public' : (req.routeOptions.config?.access ?? 'admin');
    if (access === 'public' || access === 'route') return;
    await requireToken(auth, req, reply, access);
  };
}
