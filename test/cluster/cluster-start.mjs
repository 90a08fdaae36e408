// The infrastructure of `cluster-test`, started in order: PostgreSQL and Redis (cluster mode),
// nginx in front of every node (ports chosen first: nginx names the nodes, the nodes name nginx),
// then the server nodes — the first migrates the store and makes the admin token, the others join.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ACCEL_PREFIX, startClusterNginx } from './nginx.mjs';
import { nodePorts, startNode } from './nodes.mjs';
import { startPostgres } from './postgres.mjs';
import { startRedis } from './redis.mjs';

export class ClusterTestError extends Error {
  /** @param {string} code @param {string} message @param {string} [hint] */
  constructor(code, message, hint) {
    super(message);
    this.code = code;
    this.hint = hint;
  }
}

/**
 * Runs `start`; a failure becomes FLOTILLA_ERR_CLUSTER_TEST_START naming the component (and the
 * Debian package behind it).
 * @template T
 * @param {string} name @param {string | null} pkg @param {() => Promise<T>} start
 */
export async function component(name, pkg, start) {
  try {
    return await start();
  } catch (err) {
    throw new ClusterTestError(
      'FLOTILLA_ERR_CLUSTER_TEST_START',
      `${name} did not start: ${err.message}`,
      pkg ? `is the Debian package ${pkg} installed and working?` : undefined,
    );
  }
}

/**
 * @param {{ store: 'postgres' | 'sqlite', nodes: number, keep: boolean, work: string, keysDir: string,
 *   log: (line: string) => void, nginxWorkers?: number }} o
 */
export async function startCluster(o) {
  const { log } = o;
  const pg =
    o.store === 'postgres'
      ? await component('PostgreSQL', 'postgresql', () => startPostgres('flotilla', { maxConnections: 200 }))
      : null;
  if (pg) log(`PostgreSQL on 127.0.0.1:${pg.port}`);
  const redis = o.nodes > 1 ? await component('Redis', 'redis-server', startRedis) : null;
  if (redis) log(`Redis at ${redis.url}`);

  // Ports first: nginx's configuration names every node, and the nodes name nginx.
  const ports = [];
  for (let i = 0; i < o.nodes; i++) ports.push(await nodePorts());
  const sharedArtifacts = join(o.work, 'artifacts');
  mkdirSync(sharedArtifacts);
  const nginx = await component('nginx', 'nginx libnginx-mod-stream', () =>
    startClusterNginx({
      nodes: ports.map((p) => ({ api: `127.0.0.1:${p.api}`, mqtt: `127.0.0.1:${p.mqtt}` })),
      artifactDir: sharedArtifacts,
      ...(o.nginxWorkers ? { workers: o.nginxWorkers } : {}),
    }),
  );
  log(
    `nginx: API ${nginx.apiUrl}, artifacts ${nginx.artifactsUrl}, MQTT ${nginx.mqttUrl}${o.keep ? ` (logs in ${nginx.dir})` : ''}`,
  );

  const nodes = [];
  for (let i = 0; i < o.nodes; i++) {
    const id = `node-${i + 1}`;
    const dir = join(o.work, id);
    // The first node migrates the store and makes the admin token; the others join it.
    const node = await component(`server ${id}`, null, () =>
      startNode({
        id,
        dir,
        ports: ports[i],
        keysDir: o.keysDir,
        sharedArtifacts,
        ...(i > 0 ? { firstNodeDir: nodes[0].dataDir } : {}),
        publicUrl: nginx.apiUrl,
        artifactBaseUrl: nginx.artifactsUrl,
        accelPrefix: ACCEL_PREFIX,
        nodeIdFlag: o.store === 'postgres' || o.nodes > 1,
        ...(pg ? { database: pg.url } : {}),
        ...(redis ? { redis: redis.url } : {}),
      }),
    );
    nodes.push(node);
    log(`server ${id}: API ${node.url}, MQTT ${node.mqtt}`);
  }
  return { nginx, nodes, pg, redis };
}
