import { CodedError } from '@flotilla/protocol';
import { describe, expect, it } from 'vitest';
import { ApiClientError } from '../src/api-client.js';
import { CLI_ERRORS, CliError } from '../src/errors.js';

describe('CLI error registry', () => {
  it('gives every code the FLOTILLA_ERR_CLI_ prefix, an HTTP status, a message and a hint', () => {
    for (const [code, e] of Object.entries(CLI_ERRORS)) {
      expect(code).toMatch(/^FLOTILLA_ERR_CLI_[A-Z_]+$/);
      expect(e.status).toBeGreaterThanOrEqual(400);
      expect(e.status).toBeLessThan(600);
      expect(e.message.length).toBeGreaterThan(3);
      expect(e.hint.length).toBeGreaterThan(3);
    }
  });

  it('raises CliErrors with code, status, hint, component and cause', () => {
    const cause = new Error('EACCES');
    const err = new CliError('FLOTILLA_ERR_CLI_KEY_FILE', 'release.key', { cause });
    expect(err).toBeInstanceOf(CodedError);
    expect(err).toMatchObject({
      name: 'CliError',
      code: 'FLOTILLA_ERR_CLI_KEY_FILE',
      status: 400,
      component: 'cli',
    });
    expect(err.message).toBe('cannot read the key file: release.key');
    expect(err.cause).toBe(cause);
  });

  it('keeps the HTTP status of an answer apart from a failure where no answer arrived', () => {
    const down = ApiClientError.of('FLOTILLA_ERR_CLI_SERVER_UNREACHABLE', 'http://127.0.0.1:1');
    expect(down).toBeInstanceOf(CodedError);
    expect(down).toMatchObject({ httpStatus: 0, status: 503, component: 'cli' });
    expect(down.hint).toBe(CLI_ERRORS.FLOTILLA_ERR_CLI_SERVER_UNREACHABLE.hint);

    const refused = ApiClientError.of('FLOTILLA_ERR_CLI_UNAUTHORIZED', 'bad token', 403);
    expect(refused).toMatchObject({ httpStatus: 403, status: 403 });
  });

  it('relays a server error with its own code, message, hint and status', () => {
    const err = ApiClientError.relayed('FLOTILLA_ERR_SERVER_CONFLICT', 'busy', 'retry', 409);
    expect(err).toMatchObject({
      name: 'ApiClientError',
      code: 'FLOTILLA_ERR_SERVER_CONFLICT',
      message: 'busy',
      hint: 'retry',
      status: 409,
      httpStatus: 409,
      component: 'server',
    });
    expect(ApiClientError.relayed('FLOTILLA_ERR_SERVER_X', 'm', undefined, 500).hint).toBe('');
  });
});
