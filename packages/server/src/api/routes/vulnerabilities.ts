import { rm } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { Type } from '@sinclair/typebox';
import { provenanceStatement, signStatement } from '../../attestations/in-toto.js';
import { ServerError } from '../../errors.js';
import type { Evaluation } from '../../policy/evaluate.js';
import { releaseFacts } from '../../policy/policy-service.js';
import { VulnsError } from '../../vulns/errors.js';
import type { Finding } from '../../vulns/match.js';
import { filterRecords, recordDocument, recordRow } from '../../vulns/record-list.js';
import { SEVERITIES } from '../../vulns/severity.js';
import { actorOf } from '../auth.js';
import { Paging, VersionParams } from '../schemas.js';
import { IsoTime, OpenObject, OrNull } from '../views.js';
import {
  DsseEnvelopeView,
  FleetExposureView,
  VulnImportResultView,
  VulnStatusView,
} from '../vulnerability-views.js';
import { type RoutePlugin, responses } from './plugin.js';

const strict = { additionalProperties: false } as const;
const CHANNELS = ['dev', 'staging', 'prod'] as const;

const FindingView = Type.Object({
  id: Type.String(),
  aliases: Type.Array(Type.String()),
  package: Type.String(),
  installed: Type.String(),
  fixed: OrNull(Type.String()),
  severity: Type.String(),
  score: OrNull(Type.Number()),
  sourcePackage: Type.String(),
  purl: Type.String(),
  summary: OrNull(Type.String()),
  waivedIn: Type.Array(Type.String(), { description: 'channels whose policy waives this finding' }),
});

const ReleaseFindings = Type.Object({
  version: Type.String(),
  scannedAt: IsoTime,
  importId: OrNull(Type.Integer()),
  packages: Type.Integer({ minimum: 0 }),
  policyVersion: Type.Integer({ minimum: 0 }),
  vulnerabilities: Type.Array(FindingView),
  channels: Type.Record(
    Type.String(),
    Type.Object({ pass: Type.Boolean(), violations: Type.Array(Type.String()) }),
  ),
});

const Severity = Type.Union([...SEVERITIES.map((s) => Type.Literal(s)), Type.Literal('unknown')]);
const RecordId = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$' });
const PackageRef = Type.Object({ ecosystem: Type.String(), name: Type.String() });

const RecordRow = Type.Object({
  id: Type.String(),
  severity: Type.String(),
  score: OrNull(Type.Number()),
  modified: IsoTime,
  withdrawn: Type.Boolean(),
  packages: Type.Array(PackageRef, { description: 'the affected packages (ecosystem and name)' }),
  summary: OrNull(Type.String()),
});

const RecordDocument = Type.Object({
  id: Type.String(),
  modified: IsoTime,
  withdrawn: Type.Boolean(),
  aliases: Type.Array(Type.String()),
  summary: OrNull(Type.String()),
  severity: Type.String(),
  score: OrNull(Type.Number()),
  affected: Type.Array(OpenObject('an affected package: ecosystem, name, ranges, versions, family')),
});

const PromotionView = Type.Object({
  id: Type.Integer(),
  releaseId: Type.String(),
  from: OrNull(Type.String()),
  to: Type.String(),
  actor: Type.String(),
  ts: IsoTime,
  policyVersion: OrNull(Type.Integer()),
  // Open: the store keeps this record untyped and its fields grew over versions (importId,
  // scannedAt, packages, findings, bySeverity, then result, waived, attestation).
  scan: OpenObject("the scan attestation's summary at promotion"),
  violations: Type.Array(Type.String()),
  overrideReason: OrNull(Type.String()),
});

/**
 * Vulnerability data (OSV imports, status), each release's findings, promotion records and the
 * fleet view weighted by the devices that run each image.
 */
export const vulnerabilityRoutes: RoutePlugin = async (app, { ctx }) => {
  // The archive streams to a temporary file under the import size limit; it is never buffered whole.
  app.addContentTypeParser('application/zip', (_req, payload, done) => done(null, payload));

  const existing = async (version: string) => {
    const release = await ctx.store.releases.get(version);
    if (!release) throw new ServerError('FLOTILLA_ERR_SERVER_NOT_FOUND', `release ${version}`);
    return release;
  };

  app.post(
    '/vulnerabilities/import',
    {
      config: { access: 'operator' },
      schema: {
        tags: ['vulnerabilities'],
        summary: 'Import a zip of OSV records (all or nothing; newer `modified` replaces older)',
        headers: Type.Object({ 'content-type': Type.String({ pattern: '^application/zip' }) }),
        querystring: Type.Object({ skipUnknownEcosystems: Type.Optional(Type.Boolean()) }, strict),
        response: responses({ 200: VulnImportResultView }),
      },
    },
    async (req) => {
      const received = await ctx.artifacts.receive(
        capped(req.body as Readable, ctx.limits.maxOsvImportBytes),
      );
      try {
        return await ctx.vulns.importArchive(received.path, actorOf(req), {
          skipUnknownEcosystems: req.query.skipUnknownEcosystems === true,
        });
      } finally {
        await rm(received.path, { force: true });
      }
    },
  );

  app.get(
    '/vulnerabilities/status',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['vulnerabilities'],
        summary: 'Record counts and the last import (with its age)',
        response: responses({ 200: VulnStatusView }),
      },
    },
    async () => ctx.vulns.status(),
  );

  app.get(
    '/vulnerabilities',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['vulnerabilities'],
        summary: 'The loaded OSV records, in id order (filter by affected package name, severity)',
        querystring: Type.Object(
          {
            package: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
            severity: Type.Optional(Severity),
            ...Paging,
          },
          strict,
        ),
        response: responses({
          200: Type.Object({ items: Type.Array(RecordRow), total: Type.Integer({ minimum: 0 }) }),
        }),
      },
    },
    async (req) => {
      const { limit = 100, offset = 0, ...filter } = req.query;
      const matching = filterRecords(await ctx.vulns.records(), filter);
      return { items: matching.slice(offset, offset + limit).map(recordRow), total: matching.length };
    },
  );

  app.get(
    '/vulnerabilities/:id',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['vulnerabilities'],
        summary: 'One loaded OSV record as stored (the fields matching uses)',
        params: Type.Object({ id: RecordId }, strict),
        response: responses({ 200: RecordDocument }),
      },
    },
    async (req) => {
      const record = (await ctx.vulns.records()).find((r) => r.id === req.params.id);
      if (!record) throw new ServerError('FLOTILLA_ERR_SERVER_NOT_FOUND', `vulnerability ${req.params.id}`);
      return recordDocument(record);
    },
  );

  app.get(
    '/releases/:version/vulnerabilities',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['vulnerabilities'],
        summary: "A release's findings and whether each channel's policy passes",
        params: VersionParams,
        response: responses({ 200: ReleaseFindings }),
      },
    },
    async (req) => {
      const release = await existing(req.params.version);
      const scan = await ctx.vulns.findings(release.version);
      const policy = await ctx.policy.current();
      const evaluations: Evaluation[] = [];
      for (const channel of CHANNELS)
        evaluations.push((await ctx.policy.evaluate(release, channel)).evaluation);
      return {
        version: release.version,
        scannedAt: new Date(scan.ts).toISOString(),
        importId: scan.importId,
        packages: scan.packages,
        policyVersion: policy.version,
        vulnerabilities: scan.findings.map((finding) => ({
          id: finding.id,
          aliases: finding.aliases,
          package: finding.package,
          installed: finding.installed,
          fixed: finding.fixed,
          severity: finding.severity,
          score: finding.score,
          sourcePackage: finding.sourcePackage,
          purl: finding.purl,
          summary: finding.summary,
          waivedIn: evaluations
            .filter((evaluation) => evaluation.waived.some((waived) => sameFinding(waived.finding, finding)))
            .map((evaluation) => evaluation.channel),
        })),
        channels: Object.fromEntries(
          evaluations.map((evaluation) => [
            evaluation.channel,
            { pass: evaluation.pass, violations: evaluation.violations },
          ]),
        ),
      };
    },
  );

  app.post(
    '/releases/:version/vulnerabilities/scan',
    {
      config: { access: 'operator' },
      schema: {
        tags: ['vulnerabilities'],
        summary: "Scan a release's SBOM against the imported records now",
        params: VersionParams,
        response: responses({
          200: Type.Object({
            version: Type.String(),
            scannedAt: IsoTime,
            findings: Type.Integer({ minimum: 0 }),
          }),
        }),
      },
    },
    async (req) => {
      const scan = await ctx.vulns.scanRelease((await existing(req.params.version)).version);
      return {
        version: scan.releaseId,
        scannedAt: new Date(scan.ts).toISOString(),
        findings: scan.findings.length,
      };
    },
  );

  app.get(
    '/releases/:version/promotions',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['vulnerabilities'],
        summary: "A release's promotion records (policy version, scan, violations, overrides)",
        params: VersionParams,
        response: responses({
          200: Type.Object({
            version: Type.String(),
            provenance: Type.Unknown({ description: 'the signed provenance of the manifest, if any' }),
            items: Type.Array(PromotionView),
          }),
        }),
      },
    },
    async (req) => {
      const release = await existing(req.params.version);
      return {
        version: release.version,
        provenance: releaseFacts(release).provenance,
        items: (await ctx.store.policies.promotions(release.id)).map((promotion) => ({
          ...promotion,
          ts: new Date(promotion.ts).toISOString(),
        })),
      };
    },
  );

  app.get(
    '/releases/:version/attestations',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['vulnerabilities'],
        summary:
          'in-toto statements (DSSE): SLSA provenance of the release, vulnerability scans at promotions',
        params: VersionParams,
        response: responses({
          200: Type.Object({
            version: Type.String(),
            key: Type.Object({ keyid: Type.String(), publicKey: Type.String() }),
            provenance: DsseEnvelopeView,
            scans: Type.Array(
              Type.Object({
                to: Type.String(),
                ts: IsoTime,
                attestation: Type.Unknown({ description: 'DSSE envelope of the scan, or null' }),
              }),
            ),
          }),
        }),
      },
    },
    async (req) => {
      const release = await existing(req.params.version);
      const manifest = release.manifest.signed;
      const key = ctx.keys.delta;
      return {
        version: release.version,
        // Envelopes are signed by this server key; the provenance fields also by the release signature.
        key: { keyid: key.keyId, publicKey: Buffer.from(key.publicKey).toString('hex') },
        provenance: signStatement(
          provenanceStatement({
            name: manifest.name,
            version: manifest.version,
            imageSha256: manifest.image.sha256,
            sbomSha256: manifest.sbom.sha256,
            provenance: manifest.provenance,
          }),
          key,
        ),
        scans: (await ctx.store.policies.promotions(release.id)).map((promotion) => ({
          to: promotion.to,
          ts: new Date(promotion.ts).toISOString(),
          attestation: promotion.scan.attestation ?? null,
        })),
      };
    },
  );

  app.get(
    '/vulnerabilities/fleet',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['vulnerabilities'],
        summary:
          'Findings across the images devices run, weighted by device count; prod releases failing policy',
        response: responses({ 200: FleetExposureView }),
      },
    },
    async () => ({ ...(await ctx.vulns.fleetExposure()), prodFailures: await ctx.policy.prodFailures() }),
  );
};

/**
 * Each evaluation reads the stored scan again (new objects): a finding is the same when its
 * record, package and installed version are.
 */
const sameFinding = (a: Finding, b: Finding) =>
  a.id === b.id && a.package === b.package && a.installed === b.installed;

/** The upload's bytes, refused at the first one past `maxBytes` (nothing past it is written). */
async function* capped(source: AsyncIterable<Buffer>, maxBytes: number): AsyncIterable<Buffer> {
  let seen = 0;
  for await (const chunk of source) {
    seen += chunk.length;
    if (seen > maxBytes)
      throw new VulnsError('FLOTILLA_ERR_VULNS_IMPORT_TOO_LARGE', `upload over ${maxBytes} bytes`);
    yield chunk;
  }
}
