import { type ErrorEntry, errorClass } from '@flotilla/protocol';
/**
 * The error registry of `@flotilla/fleet-simulator`. Same shape as protocol's: stable code,
 * message, hint. The demo prints the code and hint when it fails.
 */
export const SIM_ERRORS = {
  FLOTILLA_ERR_SIM_BAD_ARGUMENT: {
    status: 400,
    message: 'invalid simulator argument',
    hint: 'check the option named in the message',
  },
  FLOTILLA_ERR_SIM_TOOL_MISSING: {
    status: 500,
    message: 'a required system tool is not installed',
    hint: 'install the Debian package named in the message (e.g. `apt-get install -y e2fsprogs`)',
  },
  FLOTILLA_ERR_SIM_SLOT: {
    status: 500,
    message: 'slot storage failed',
    hint: 'check free space and permissions of the simulator work directory',
  },
  FLOTILLA_ERR_SIM_BEHAVIOUR: {
    status: 500,
    message: 'cannot read the boot behaviour of the booted image',
    hint: 'every simulated image must carry /etc/flotilla/sim-behaviour.json',
  },
  FLOTILLA_ERR_SIM_POWER_ON: {
    status: 500,
    message: 'devices failed to power on',
    hint: 'the message names the first failure (agent start, slot files, firmware files)',
  },
  FLOTILLA_ERR_SIM_POWERED_OFF: {
    status: 503,
    message: 'device is powered off',
    hint: 'an I/O was attempted after a simulated power cut; it is dropped on purpose',
  },
  FLOTILLA_ERR_SIM_PROXY: {
    status: 502,
    message: 'fault proxy failed',
    hint: 'the loopback proxy could not listen or reach its upstream',
  },
  FLOTILLA_ERR_SIM_TIMEOUT: {
    status: 504,
    message: 'the fleet did not reach the expected state in time',
    hint: 'the message names what was awaited; look at the devices that are still busy',
  },
  FLOTILLA_ERR_SIM_SERVER: {
    status: 502,
    message: 'the Flotilla server refused a request',
    hint: 'the message carries the server error',
  },
} as const satisfies Record<string, ErrorEntry>;

export type SimErrorCode = keyof typeof SIM_ERRORS;

export class SimError extends errorClass(SIM_ERRORS, 'fleet-simulator', 'SimError') {}

export function isSimError(err: unknown, code?: SimErrorCode): err is SimError {
  return err instanceof SimError && (code === undefined || err.code === code);
}
