// Matching cost: N OSV records (Debian:12, ECOSYSTEM ranges, CVSS vectors) against an SBOM of M
// deb packages, 1 in 10 of them named by some record. Prints the index build and the match time
// (median of runs). Usage: node bench/vulns/match.mjs [--records 10000] [--packages 5000] [--runs 5]
import { parseArgs } from 'node:util';
import { parseOsvRecord, VulnIndex } from '@flotilla/server';

const { values } = parseArgs({
  options: {
    records: { type: 'string', default: '10000' },
    packages: { type: 'string', default: '5000' },
    runs: { type: 'string', default: '5' },
  },
});
const RECORDS = Number(values.records);
const PACKAGES = Number(values.packages);
const RUNS = Math.min(Math.max(Number(values.runs), 1), 50);

// Source package names: every package's source is one of PACKAGES / 2 names, so records land on
// real packages and many binaries share a source (as libc6 / libc-bin share glibc).
const sources = Array.from({ length: Math.ceil(PACKAGES / 2) }, (_, i) => `src${i}`);
const records = [];
for (let i = 0; i < RECORDS; i++) {
  const osv = {
    id: `DEBIAN-CVE-2026-${String(i).padStart(5, '0')}`,
    modified: '2026-01-01T00:00:00Z',
    aliases: [`CVE-2026-${i}`],
    severity: [{ type: 'CVSS_V3', score: 'CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H' }],
    affected: [
      {
        package: { ecosystem: 'Debian:12', name: sources[(i * 7) % sources.length] },
        ranges: [
          {
            type: 'ECOSYSTEM',
            events: [{ introduced: '0' }, { fixed: `1.${i % 50}.0-${(i % 5) + 1}+deb12u1` }],
          },
        ],
      },
    ],
  };
  records.push(
    parseOsvRecord(`${osv.id}.json`, Buffer.from(JSON.stringify(osv)), { skipUnknownEcosystems: false })
      .record,
  );
}
const packages = Array.from({ length: PACKAGES }, (_, i) => ({
  family: 'deb',
  name: `bin${i}`,
  version: `1:1.${i % 60}.${i % 7}-${i % 4}+b1`,
  purl: `pkg:deb/debian/bin${i}@1.${i % 60}`,
  sourceName: sources[i % sources.length],
  sourceVersion: `1.${i % 60}.${i % 7}-${i % 4}`,
  distro: 'debian',
  distroRelease: '12',
}));

const ms = (t) => Number(process.hrtime.bigint() - t) / 1e6;
let t = process.hrtime.bigint();
const index = new VulnIndex(records);
const buildMs = ms(t);
const times = [];
let findings = 0;
for (let r = 0; r < RUNS; r++) {
  t = process.hrtime.bigint();
  findings = index.match(packages).length;
  times.push(ms(t));
}
times.sort((a, b) => a - b);
const median = times[Math.floor(times.length / 2)];
console.log(`records ${RECORDS}  packages ${PACKAGES}  findings ${findings}`);
console.log(
  `index build ${buildMs.toFixed(1)} ms  match median ${median.toFixed(1)} ms  (min ${times[0].toFixed(1)}, max ${times.at(-1).toFixed(1)}, ${RUNS} runs)`,
);
console.log(
  `index + match ${(buildMs + median).toFixed(1)} ms  ${buildMs + median < 1000 ? 'under' : 'OVER'} the 1 s target`,
);
