import { expect } from 'vitest';
import type { LoginOrder } from '../src/mqtt/login-order.js';

/** What every LoginOrder must do (in memory alone, in Redis for several nodes). */
export async function checkLoginOrder(order: LoginOrder, id: string): Promise<void> {
  expect(await order.claim(id, 2_000, 60_000, 0)).toBe(true);
  expect(await order.claim(id, 1_000, 60_000, 0)).toBe(false);
  // The same instant is not older (two logins signed in one millisecond).
  expect(await order.claim(id, 2_000, 60_000, 0)).toBe(true);
  // The end of an older session leaves the newer one's record.
  await order.release(id, 1_000);
  expect(await order.claim(id, 1_500, 60_000, 0)).toBe(false);
  await order.release(id, 2_000);
  expect(await order.claim(id, 1_500, 60_000, 0)).toBe(true);
  // A record lives only as long as a password that old can verify (`now` for memory, Redis' clock).
  expect(await order.claim(`${id}-ttl`, 5_000, 50, 0)).toBe(true);
  await new Promise((r) => setTimeout(r, 120));
  expect(await order.claim(`${id}-ttl`, 1_000, 50, 120)).toBe(true);
}
