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

export function parseDemoArgs(rawArgv: string[]): DemoArgs {
  // `pnpm demo -- --json` passes the `--` through; it separates nothing here.
  const argv = rawArgv.filter((a) => a !== '--');
  const out: DemoArgs = { devices: 50, json: false, keepRunning: false, seed: 1, faults: [], help: false };
  const value = (i: number, name: string): string => {
    const v = argv[i + 1];
    if (v === undefined || v.startsWith('--'))
      throw new SimError('FLOTILLA_ERR_SIM_BAD_ARGUMENT', `${name} needs a value`);
    return v;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    const [flag, inline] = a.includes('=') ? (a.split(/=(.*)/s, 2) as [string, string]) : [a, undefined];
    const take = (): string => {
      if (inline !== undefined) return inline;
      const v = value(i, flag);
      i++;
      return v;
    };
    switch (flag) {
      case '--devices': {
        const v = take();
        const n = Number(v);
        if (!/^\d+$/.test(v) || n < 1 || n > 2000)
          throw new SimError('FLOTILLA_ERR_SIM_BAD_ARGUMENT', `--devices ${v} (1-2000)`);
        out.devices = n;
        break;
      }
      case '--seed': {
        const v = take();
        if (!/^\d{1,9}$/.test(v)) throw new SimError('FLOTILLA_ERR_SIM_BAD_ARGUMENT', `--seed ${v}`);
        out.seed = Number(v);
        break;
      }
      case '--json':
        out.json = true;
        break;
      case '--keep-running':
        out.keepRunning = true;
        break;
      case '--work-dir':
        out.workDir = take();
        break;
      case '--fault':
        out.faults.push(parseFaultSpec(take()));
        break;
      case '--help':
      case '-h':
        out.help = true;
        break;
      default:
        throw new SimError('FLOTILLA_ERR_SIM_BAD_ARGUMENT', `unknown option ${a}`);
    }
  }
  return out;
}
