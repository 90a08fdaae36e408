import {
  type FaultProfile,
  isTerminalRollout,
  type RolloutView,
  startWorld,
  type World,
  type WorldOptions,
  watchRollout,
} from '@flotilla/fleet-simulator';

/** A small world for one e2e test: real server, real agents, small ext4 images, fast timings. */
export async function smallWorld(
  devices: number,
  faults: FaultProfile[] = [],
  seed = 7,
  server?: WorldOptions['server'],
  agentLimits?: WorldOptions['agentLimits'],
): Promise<World> {
  const world = await startWorld({
    devices,
    faults,
    seed,
    timeScale: 0.05,
    size: 'standard',
    ...(server ? { server } : {}),
    ...(agentLimits ? { agentLimits } : {}),
  });
  try {
    await world.fleet.powerOn();
    await world.fleet.waitFor(
      `${devices} devices online`,
      async () => (await world.server.onlineCount()) >= devices,
      30_000,
    );
  } catch (err) {
    await world.close();
    throw err;
  }
  return world;
}

/** Rolls 1.1.0 out to the whole fleet in one phase and waits until the rollout ends (bounded). */
export async function rollOut(
  world: World,
  opts: {
    maxConcurrent?: number;
    deviceTimeoutSeconds?: number;
    retries?: { failed?: number; rolledBack?: number; timedOut?: number };
    /** How long the rollout may take to end (a generous budget: the machine may be busy). */
    timeoutMs?: number;
  } = {},
  during?: (id: string) => Promise<void>,
): Promise<{ id: string; view: RolloutView }> {
  await world.publish('1.1.0');
  const id = await world.server.startRollout({
    name: 'e2e 1.1.0',
    release: '1.1.0',
    phases: [{ name: 'all', percent: 100, errorThreshold: 50 }],
    maxConcurrent: opts.maxConcurrent ?? 20,
    deviceTimeoutSeconds: opts.deviceTimeoutSeconds ?? 120,
    retries: opts.retries,
  });
  await during?.(id);
  const view = await watchRollout(world.server, world.fleet, id, {
    until: isTerminalRollout,
    timeoutMs: opts.timeoutMs ?? 150_000,
  });
  if (!isTerminalRollout(view)) {
    // Say what is stuck, so a failure explains itself.
    const deployments = await world.server.deployments(id);
    const devices = world.fleet.devices.map(
      (d) => `${d.id}:${d.phase}/${d.agentState}/${d.current?.release}`,
    );
    console.error(
      'rollout did not end',
      JSON.stringify({ view, deployments, devices, log: world.fleet.log.slice(-20) }),
    );
  }
  return { id, view };
}

/** Devices the agent left in a state of an update (not Idle): "stuck". */
export function stuckDevices(world: World): string[] {
  return world.fleet.devices
    .filter((d) => d.phase !== 'running' || d.agentState !== 'Idle')
    .map((d) => `${d.id}:${d.phase}/${d.agentState}`);
}
