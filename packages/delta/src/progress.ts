/** Progress of a long delta operation; `done` and `total` are bytes of the phase's image. */
export interface DeltaProgress {
  phase: 'create' | 'verify-base' | 'apply';
  done: number;
  total: number;
}
