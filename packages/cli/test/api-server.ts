import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type RunningServer, startServer } from '@flotilla/server';

export interface ApiServer {
  server: RunningServer;
  /** Stops the server and removes its data directory. */
  close(): Promise<void>;
}

/** A real server for CLI tests: HTTP API on loopback, no MQTT listener, TEST-ONLY dev keys. */
export async function startApiServer(prefix: string, adminToken: string): Promise<ApiServer> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const server = await startServer({
    dataDir: dir,
    devKeys: true,
    adminToken,
    port: 0,
    mqttPort: null,
    logLevel: 'silent',
  });
  return {
    server,
    close: async () => {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
