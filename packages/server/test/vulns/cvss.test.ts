import { describe, expect, it } from 'vitest';
import { cvss3BaseScore } from '../../src/vulns/cvss.js';
import { recordSeverity } from '../../src/vulns/severity.js';

describe('CVSS v3 base score', () => {
  // Scores as NVD publishes them for these vectors.
  it.each([
    ['CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H', 9.8],
    ['CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H', 10],
    ['CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N', 6.1],
    ['CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H', 7.8],
    ['CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N', 5.9],
    ['CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:H/I:H/A:H', 9.9],
    ['CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H', 7.5],
    ['CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N', 0],
    ['CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:P/RL:O', 9.8], // temporal metrics ignored
  ])('%s → %d', (vector, score) => {
    expect(cvss3BaseScore(vector)).toBe(score);
  });

  it.each([
    'CVSS:2.0/AV:N/AC:L/Au:N/C:P/I:P/A:P',
    'CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H', // A missing
    'CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H',
    'CVSS:3.1/AV:N/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H',
    'CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N',
  ])('refuses %s', (vector) => {
    expect(cvss3BaseScore(vector)).toBeNull();
  });
});

describe('record severity', () => {
  it('rates from the v3 vector, a bare v3 score, then the feed label; unknown stays unknown', () => {
    expect(
      recordSeverity({
        severity: [{ type: 'CVSS_V3', score: 'CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H' }],
      }),
    ).toEqual({ severity: 'critical', score: 9.8 });
    expect(recordSeverity({ severity: [{ type: 'CVSS_V3', score: '7.0' }] }).severity).toBe('high');
    expect(recordSeverity({ database_specific: { severity: 'MODERATE' } }).severity).toBe('medium');
    expect(recordSeverity({ severity: [{ type: 'CVSS_V4', score: 'CVSS:4.0/AV:N' }] })).toEqual({
      severity: 'unknown',
      score: null,
    });
    expect(recordSeverity({})).toEqual({ severity: 'unknown', score: null });
  });
});
