// Placeholder until the fleet simulator lands: it shows what is built so far and fakes nothing.
const parts = [
  'protocol: canonical JSON, ed25519 signing, trust rules (roles, thresholds, expiry, rotation, anti-rollback)',
  'cli: `flotilla keys init|rotate`, `flotilla manifest sign|verify`',
];
process.stdout.write(
  `Flotilla demo is not built yet. Built so far:\n${parts.map((p) => `  - ${p}`).join('\n')}\n`,
);
