import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyReply, FastifyRequest } from 'fastify';

/** sha-256 sources for the inline scripts of the dashboard's index.html (its import map). */
export function inlineScriptHashes(dashboardDir: string | null): string[] {
  const index = dashboardDir ? join(dashboardDir, 'index.html') : null;
  if (!index || !existsSync(index)) return [];
  const html = readFileSync(index, 'utf8');
  return [...html.matchAll(/<script(?![^>]*\bsrc=)[^>]*>([\s\S]*?)<\/script>/g)].map(
    (match) => `'sha256-${createHash('sha256').update(match[1]!).digest('base64')}'`,
  );
}

/**
 * Headers a browser needs to keep the dashboard and API safe: a Content-Security-Policy that
 * allows only the server's own files (the import map by its hash), no framing
 * (`frame-ancestors` and `X-Frame-Options`, against clickjacking), `nosniff` (an artifact or JSON
 * body is never run as script) and no referrer. The OpenAPI UI at /docs ships inline code, so it
 * gets the same policy with inline scripts and styles allowed.
 */
export function securityHeaders(dashboardDir: string | null) {
  const hashes = inlineScriptHashes(dashboardDir);
  const common = [
    "default-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ];
  const strict = [...common, `script-src 'self' ${hashes.join(' ')}`.trim(), "style-src 'self'"].join('; ');
  const docs = [...common, "script-src 'self' 'unsafe-inline'", "style-src 'self' 'unsafe-inline'"].join(
    '; ',
  );
  return async (req: FastifyRequest, reply: FastifyReply, payload: unknown): Promise<unknown> => {
    const isDocs = req.routeOptions.url?.startsWith('/docs') === true;
    reply.header('content-security-policy', isDocs ? docs : strict);
    reply.header('x-frame-options', 'DENY');
    reply.header('x-content-type-options', 'nosniff');
    reply.header('referrer-policy', 'no-referrer');
    return payload;
  };
}
