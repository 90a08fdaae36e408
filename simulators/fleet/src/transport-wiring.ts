import { MqttTransport, resolveLimits, systemClock } from '@flotilla/agent';
import { simLimits } from './agent-wiring.js';
import type { LaunchContext } from './ports.js';

/**
 * The device's MQTT link is the agent's own `MqttTransport` (MQTT 3.1.1, device-key password per
 * connect — or the password the server issued, behind an external broker — persistent session,
 * jittered reconnects, last will). `kill()` is a power cut: its stop ends the
 * socket with force, so no DISCONNECT is sent and the broker sees the device vanish.
 */
export function defaultTransport(ctx: LaunchContext): MqttTransport & { kill(): void } {
  const t = new MqttTransport({
    url: `mqtt://${ctx.mqtt.host}:${ctx.mqtt.port}`,
    deviceId: ctx.deviceId,
    auth: ctx.mqttPassword
      ? { kind: 'password', password: ctx.mqttPassword }
      : { kind: 'device-key', key: ctx.key },
    clock: systemClock,
    limits: resolveLimits(simLimits(ctx.timeScale)).mqtt,
  });
  return Object.assign(t, {
    kill: () => {
      void t.stop().catch(() => undefined);
    },
  });
}
