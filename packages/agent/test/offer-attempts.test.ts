import { afterEach, describe, expect, it } from 'vitest';
import { mutateImage, Rig } from './helpers.js';

let rig: Rig;
afterEach(async () => rig?.cleanup());

/**
 * The server re-sends the offer of a deployment it still believes `offered` when the device comes
 * back (after a server restart, say), while the device's report that the attempt already ended is
 * still on its way. Installing it again would put the device on the release while the server
 * records the attempt failed (its final state): only a retry, with a higher attempt, installs.
 */
describe('offer attempts', () => {
  it('a re-sent offer of an attempt that already ended is ignored; the retry (attempt 2) installs', async () => {
    rig = await Rig.create();
    await rig.powerOn();
    const next = mutateImage(rig.factory, 31);
    rig.healthy = (slot) => (slot === 'B' ? 'app.service failed: exit code 3' : true);
    rig.send(rig.offer(next, { version: '1.1.0', attempt: 1 }));
    await rig.runToRest();
    await rig.agent!.flushReports();
    expect(rig.told().at(-1)).toBe('rolled-back:FLOTILLA_ERR_AGENT_HEALTH_CHECK_FAILED');
    const toldBefore = rig.told().length;

    rig.healthy = () => true;
    rig.send(rig.offer(next, { version: '1.1.0', attempt: 1 }));
    await rig.agent!.settled();
    await rig.agent!.flushReports();
    expect(rig.agent!.record).toMatchObject({ state: 'Idle', committedSlot: 'A', deployment: null });
    expect(rig.told()).toHaveLength(toldBefore);
    expect((await rig.slotBytes('A', rig.factory.length)).equals(rig.factory)).toBe(true);

    rig.send(rig.offer(next, { version: '1.1.0', attempt: 2 }));
    await rig.runToRest();
    await rig.agent!.flushReports();
    expect(rig.agent!.record).toMatchObject({ state: 'Idle', committedSlot: 'B' });
    expect(rig.told().at(-1)).toBe('healthy');
  });

  it('an offer without an attempt (an older server) is taken as before', async () => {
    rig = await Rig.create();
    await rig.powerOn();
    const next = mutateImage(rig.factory, 32);
    rig.healthy = (slot) => (slot === 'B' ? 'app.service failed: exit code 3' : true);
    rig.send(rig.offer(next, { version: '1.1.0' }));
    await rig.runToRest();
    rig.healthy = () => true;
    rig.send(rig.offer(next, { version: '1.1.0' }));
    await rig.runToRest();
    expect(rig.agent!.record).toMatchObject({ state: 'Idle', committedSlot: 'B' });
  });
});
