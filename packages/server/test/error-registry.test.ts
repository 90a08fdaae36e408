import { CodedError } from '@flotilla/protocol';
import { describe, expect, it } from 'vitest';
import { SERVER_ERRORS, ServerError, STORE_ERRORS } from '../src/errors.js';
import { POLICY_ERRORS } from '../src/policy/errors.js';
import { ROLLOUT_ERRORS, RolloutError } from '../src/rollout/errors.js';
import { VULNS_ERRORS } from '../src/vulns/errors.js';

const registries = [
  ['server', SERVER_ERRORS, /^FLOTILLA_ERR_SERVER_[A-Z_]+$/],
  ['store', STORE_ERRORS, /^FLOTILLA_ERR_STORE_[A-Z_]+$/],
  ['rollout', ROLLOUT_ERRORS, /^FLOTILLA_ERR_ROLLOUT_[A-Z_]+$/],
  ['vulns', VULNS_ERRORS, /^FLOTILLA_ERR_VULNS_[A-Z_]+$/],
  ['policy', POLICY_ERRORS, /^FLOTILLA_ERR_POLICY_[A-Z_]+$/],
] as const;

describe('error registries', () => {
  for (const [name, registry, prefix] of registries) {
    it(`gives every ${name} code its prefix, an HTTP status, a message and a hint`, () => {
      for (const [code, e] of Object.entries(registry)) {
        expect(code).toMatch(prefix);
        expect(e.status).toBeGreaterThanOrEqual(400);
        expect(e.status).toBeLessThan(600);
        expect(e.message.length).toBeGreaterThan(3);
        expect(e.hint.length).toBeGreaterThan(3);
      }
    });
  }

  it('raises errors with the registry code, status, hint, component and cause', () => {
    const cause = new Error('disk full');
    const s = new ServerError('FLOTILLA_ERR_SERVER_STORE', 'writing a report', { cause });
    expect(s).toBeInstanceOf(ServerError);
    expect(s).toBeInstanceOf(CodedError);
    expect(s).toMatchObject({ name: 'ServerError', code: 'FLOTILLA_ERR_SERVER_STORE', status: 500 });
    expect(s.message).toBe('storage error: writing a report');
    expect(s.cause).toBe(cause);
    expect(s.toJSON()).toMatchObject({ code: 'FLOTILLA_ERR_SERVER_STORE', component: 'server' });

    const r = new RolloutError('FLOTILLA_ERR_ROLLOUT_PHASE');
    expect(r).toBeInstanceOf(RolloutError);
    expect(r).not.toBeInstanceOf(ServerError);
    expect(r).toMatchObject({ name: 'RolloutError', status: 409, component: 'rollout' });
    expect(r.hint).toBe(ROLLOUT_ERRORS.FLOTILLA_ERR_ROLLOUT_PHASE.hint);
  });
});
