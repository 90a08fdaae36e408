import { describe, it } from 'vitest';
import { LocalLoginOrder } from '../src/mqtt/login-order.js';
import { checkLoginOrder } from './login-order-cases.js';

describe('login order on one node', () => {
  it("refuses a password older than the open session's until that session ends, for as long as it can verify", async () => {
    await checkLoginOrder(new LocalLoginOrder(), 'TEST-ONLY-dev');
  });
});
