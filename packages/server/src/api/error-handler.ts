import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { storageFault } from '../artifacts/storage-fault.js';

interface Coded {
  code?: unknown;
  status?: unknown;
  statusCode?: unknown;
  hint?: unknown;
  message?: unknown;
  validation?: unknown;
}

export interface ErrorBody {
  error: { code: string; message: string; hint?: string };
}

/**
 * One mapping for every failure: schema validation → FLOTILLA_ERR_SERVER_VALIDATION (400) naming
 * the field; Flotilla errors of any package keep their code, status and hint; fastify's own
 * client errors (bad JSON, wrong content type, too large) keep their status; anything else is a
 * 500 with no internals leaked (the log has them).
 */
export function errorHandler(log: Logger) {
  return (thrown: FastifyError, req: FastifyRequest, reply: FastifyReply): void => {
    // A full disk met anywhere (artifact write, SQLite) is 507 with its code, not an opaque 500.
    const err = (isCoded(thrown) ? null : storageFault(thrown, 'storage')) ?? thrown;
    const coded = err as unknown as Coded;
    let status = 500;
    let body: ErrorBody;
    if (coded.validation) {
      status = 400;
      body = {
        error: {
          code: 'FLOTILLA_ERR_SERVER_VALIDATION',
          message: `invalid request: ${err.message}`,
          hint: 'check the field named in the message; the OpenAPI document is at /docs',
        },
      };
    } else if (typeof coded.code === 'string' && coded.code.startsWith('FLOTILLA_ERR_')) {
      status = typeof coded.status === 'number' ? coded.status : 500;
      body = {
        error: {
          code: coded.code,
          message: String(coded.message),
          ...(typeof coded.hint === 'string' ? { hint: coded.hint } : {}),
        },
      };
    } else if (typeof coded.statusCode === 'number' && coded.statusCode >= 400 && coded.statusCode < 500) {
      status = coded.statusCode;
      body = {
        error: {
          code: status === 413 ? 'FLOTILLA_ERR_SERVER_UPLOAD_TOO_LARGE' : 'FLOTILLA_ERR_SERVER_VALIDATION',
          message: `invalid request: ${err.message}`,
          hint:
            status === 415
              ? 'send application/json (or application/octet-stream for uploads)'
              : 'fix the request',
        },
      };
    } else {
      body = {
        error: {
          code: 'FLOTILLA_ERR_SERVER_INTERNAL',
          message: 'internal error',
          hint: 'see the server log',
        },
      };
    }
    if (status >= 500) log.error({ err: thrown, url: req.url }, 'request failed');
    else req.log.debug({ code: body.error.code, url: req.url }, body.error.message);
    void reply.code(status).send(body);
  };
}

function isCoded(err: unknown): boolean {
  const code = (err as Coded | null)?.code;
  return typeof code === 'string' && code.startsWith('FLOTILLA_ERR_');
}
