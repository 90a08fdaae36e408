import { parseArgs } from 'node:util';
import { SimError } from './errors.js';
import { type FaultProfile, parseFaultSpec } from './faults.js';

export interface DemoArgs {
  devices: number;
  json: boolean;
  keepRunning: boolean;
  seed: number;
  workDir?: string;
  faults: FaultProfile[];
  help: boolean;
}

export const DEMO_USAGE = `usage: pnpm demo [--devices N] [--json] [--keep-running] [--seed N] [--fault NAME:SHARE]... [--work-dir DIR]

  --devices N        simulated devices (default 50, up to 2000)
  --json             print a summary object as the last line
  --keep-running     keep the server (and dashboard) up until Ctrl-C
  --seed N           seed of every random choice (fault targets, power-cut instants)
  --fault NAME:SHARE add a fault to a share of the fleet, e.g. power-cut:0.1, slow-network:0.2,
                     flaky-network:0.1, dropped-download:0.1 (repeatable)
  --work-dir DIR     keep keys, images and the server's data here (default: a temp dir, removed)
`;

const OPTIONS = {
  devices: { type: 'string' },
  json: { type: 'boolean' },
  'keep-running': { type: 'boolean' },
  seed: { type: 'string' },
  'work-dir': { type: 'string' },
  fault: { type: 'string', multiple: true },
  help: { type: 'boolean', short: 'h' },
} as const;

function readOptions(args: string[]) {
  try {
    return parseArgs({ args, options: OPTIONS, strict: true, allowPositionals: false }).values;
  } catch (err) {
    // node:util's own message names the option and what is wrong with it.
    throw new SimError('FLOTILLA_ERR_SIM_BAD_ARGUMENT', (err as Error).message, { cause: err });
  }
}

export function parseDemoArgs(rawArgv: string[]): DemoArgs {
  // `pnpm demo -- --json` passes the `--` through; it separates nothing here.
  const args = rawArgv.filter((a) => a !== '--');
  const values = readOptions(args);
  const out: DemoArgs = {
    devices: 50,
    json: values.json === true,
    keepRunning: values['keep-running'] === true,
    seed: 1,
    faults: (values.fault ?? []).map(parseFaultSpec),
    help: values.help === true,
  };
  if (values.devices !== undefined) {
    const n = Number(values.devices);
    if (!/^\d+$/.test(values.devices) || n < 1 || n > 2000)
      throw new SimError('FLOTILLA_ERR_SIM_BAD_ARGUMENT', `--devices ${values.devices} (1-2000)`);
    out.devices = n;
  }
  if (values.seed !== undefined) {
    if (!/^\d{1,9}$/.test(values.seed))
      throw new SimError('FLOTILLA_ERR_SIM_BAD_ARGUMENT', `--seed ${values.seed}`);
    out.seed = Number(values.seed);
  }
  if (values['work-dir'] !== undefined) out.workDir = values['work-dir'];
  return out;
}
