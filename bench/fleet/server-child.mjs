// The Flotilla server in its own process for the fleet benchmark: devices and server must not
// share one event loop (or one 20,000-file limit). Parent sends options over IPC; we answer with
// the addresses, then serve until told to stop or killed.
import { startSimServer } from '@flotilla/fleet-simulator';

// The bench gone (crashed or killed): stop too, instead of holding the ports and the data dir.
process.once('disconnect', () => process.exit(1));

process.once('message', async (opts) => {
  try {
    const server = await startSimServer(opts);
    process.send({ ok: true, apiUrl: server.apiUrl, dashboardUrl: server.dashboardUrl, mqtt: server.mqtt });
    process.on('message', async (m) => {
      if (m === 'stop') {
        await server.close();
        process.exit(0);
      }
    });
  } catch (err) {
    process.send({ ok: false, error: String(err?.stack ?? err) });
    process.exit(1);
  }
});
