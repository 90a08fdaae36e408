import { describe, expect, it } from 'vitest';
import {
  deviceTopic,
  type Identity,
  mayPublish,
  maySubscribe,
  parseDeviceTopic,
  renderMosquittoAcl,
} from '../src/index.js';

const devA: Identity = { kind: 'device', deviceId: 'dev-a' };
const server: Identity = { kind: 'server' };

describe('topic grammar', () => {
  it('builds and parses device topics', () => {
    expect(deviceTopic('dev-a', 'events')).toBe('flotilla/v1/devices/dev-a/events');
    expect(parseDeviceTopic('flotilla/v1/devices/dev-a/state')).toEqual({
      deviceId: 'dev-a',
      channel: 'state',
    });
  });

  it.each([
    'flotilla/v1/devices/dev-a',
    'flotilla/v2/devices/a/state',
    'flotilla/v1/devices/+/state',
    'flotilla/v1/devices/../state',
    'flotilla/v1/devices/a/other',
    'x',
  ])('refuses the malformed topic %s', (t) => expect(parseDeviceTopic(t)).toBeNull());

  it('refuses invalid device ids', () => {
    expect(() => deviceTopic('a/b', 'state')).toThrow(
      expect.objectContaining({ code: 'FLOTILLA_ERR_DEVICE_ID_INVALID' }),
    );
  });
});

describe('ACL table', () => {
  it.each([
    ['device publishes its own state', devA, 'flotilla/v1/devices/dev-a/state', true],
    ['device publishes its own events', devA, 'flotilla/v1/devices/dev-a/events', true],
    ['device publishes its own inventory', devA, 'flotilla/v1/devices/dev-a/inventory', true],
    ['device publishes commands to itself', devA, 'flotilla/v1/devices/dev-a/commands', false],
    ['device A publishes as device B', devA, 'flotilla/v1/devices/dev-b/events', false],
    ['device publishes to $SYS', devA, '$SYS/broker/clients', false],
    ['server publishes a command', server, 'flotilla/v1/devices/dev-b/commands', true],
    ['server publishes a fake device event', server, 'flotilla/v1/devices/dev-b/events', false],
  ] as const)('publish: %s → %s', (_name, who, topic, allowed) => {
    expect(mayPublish(who, topic)).toBe(allowed);
  });

  it.each([
    ['device subscribes to its commands', devA, 'flotilla/v1/devices/dev-a/commands', true],
    ['device subscribes to B commands', devA, 'flotilla/v1/devices/dev-b/commands', false],
    ['device subscribes to #', devA, '#', false],
    ['device subscribes with +', devA, 'flotilla/v1/devices/+/commands', false],
    ['device subscribes to $SYS', devA, '$SYS/#', false],
    [
      'device subscribes to its own events (other devices could not, but neither may it)',
      devA,
      'flotilla/v1/devices/dev-a/events',
      false,
    ],
    ['server subscribes to all events', server, 'flotilla/v1/devices/+/events', true],
    ['server subscribes to #', server, '#', false],
    ['server subscribes to $SYS', server, '$SYS/#', false],
  ] as const)('subscribe: %s → %s', (_name, who, filter, allowed) => {
    expect(maySubscribe(who, filter)).toBe(allowed);
  });

  it('renders the same table for Mosquitto', () => {
    const acl = renderMosquittoAcl('flotilla-server');
    expect(acl).toContain('pattern write flotilla/v1/devices/%u/events');
    expect(acl).toContain('pattern read flotilla/v1/devices/%u/commands');
    expect(acl).toContain('topic write flotilla/v1/devices/+/commands');
    expect(
      acl
        .split('\n')
        .filter((l) => !l.startsWith('#'))
        .join('\n'),
    ).not.toContain('#');
  });
});
