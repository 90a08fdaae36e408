// Applies a delta with the library alone, as the device agent does (no CLI around it), so the
// bench can report the codec's own apply memory next to the CLI's.
import { applyDelta } from '@flotilla/delta';

const [base, delta, target] = process.argv.slice(2);
await applyDelta({ base, delta, target });
