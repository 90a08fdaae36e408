import { rm } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { provenanceStatement, signStatement } from '../../attestations/in-toto.js';
import type { ServerContext } from '../../context.js';
import { ServerError } from '../../errors.js';
import type { Evaluation } from '../../policy/evaluate.js';
import { releaseFacts } from '../../policy/policy-service.js';
import { VulnsError } from '../../vulns/errors.js';
import { actorOf } from '../auth.js';
import { VersionParams } from '../schemas.js';

const strict = { additionalProperties: false } as const;
const CHANNELS = ['dev', 'staging', 'prod'] as const;

/**
 * Vulnerability data (OSV imports, status), each release's findings, promotion records and the
 * fleet view weighted by the devices that run each image.
 */
export async function vulnerabilityRoutes(app: FastifyInstance, ctx: ServerContext): Promise<void> {
  // The archive streams to a temporary file under the import size limit; it is never buffered whole.
  app.addContentTypeParser('application/zip', (_req, payload, done) => done(null, payload));

  const release = (version: string) => {
    const r = ctx.store.releases.get(version);
    if (!r) throw new ServerError('FLOTILLA_ERR_SERVER_NOT_FOUND', `release ${version}`);
    return r;
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
      },
    },
    async (req) => {
      const received = await ctx.artifacts.receive(
        capped(req.body as Readable, ctx.limits.maxOsvImportBytes),
      );
      try {
        const q = req.query as { skipUnknownEcosystems?: boolean };
        return await ctx.vulns.importArchive(received.path, actorOf(req), {
          skipUnknownEcosystems: q.skipUnknownEcosystems === true,
        });
      } finally {
        await rm(received.path, { force: true });
      }
    },
  );

  app.get(
    '/vulnerabilities/status',
    { config: { access: 'viewer' }, schema: { tags: ['vulnerabilities'] } },
    async () => ctx.vulns.status(),
  );

  app.get(
    '/releases/:version/vulnerabilities',
    { config: { access: 'viewer' }, schema: { tags: ['vulnerabilities'], params: VersionParams } },
    async (req) => {
      const r = release((req.params as { version: string }).version);
      const scan = await ctx.vulns.findings(r.version);
      const policy = ctx.policy.current();
      const evaluations: Evaluation[] = [];
      for (const channel of CHANNELS) evaluations.push((await ctx.policy.evaluate(r, channel)).evaluation);
      return {
        version: r.version,
        scannedAt: new Date(scan.ts).toISOString(),
        importId: scan.importId,
        packages: scan.packages,
        policyVersion: policy.version,
        vulnerabilities: scan.findings.map((f) => ({
          id: f.id,
          aliases: f.aliases,
          package: f.package,
          installed: f.installed,
          fixed: f.fixed,
          severity: f.severity,
          score: f.score,
          sourcePackage: f.sourcePackage,
          purl: f.purl,
          summary: f.summary,
          waivedIn: evaluations.filter((e) => e.waived.some((w) => w.finding === f)).map((e) => e.channel),
        })),
        channels: Object.fromEntries(
          evaluations.map((e) => [e.channel, { pass: e.pass, violations: e.violations }]),
        ),
      };
    },
  );

  app.post(
    '/releases/:version/vulnerabilities/scan',
    { config: { access: 'operator' }, schema: { tags: ['vulnerabilities'], params: VersionParams } },
    async (req) => {
      const scan = await ctx.vulns.scanRelease(release((req.params as { version: string }).version).version);
      return {
        version: scan.releaseId,
        scannedAt: new Date(scan.ts).toISOString(),
        findings: scan.findings.length,
      };
    },
  );

  app.get(
    '/releases/:version/promotions',
    { config: { access: 'viewer' }, schema: { tags: ['vulnerabilities'], params: VersionParams } },
    async (req) => {
      const r = release((req.params as { version: string }).version);
      return {
        version: r.version,
        provenance: releaseFacts(r).provenance,
        items: ctx.store.policies.promotions(r.id).map((p) => ({ ...p, ts: new Date(p.ts).toISOString() })),
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
      },
    },
    async (req) => {
      const r = release((req.params as { version: string }).version);
      const m = r.manifest.signed;
      const key = ctx.keys.delta;
      return {
        version: r.version,
        // Envelopes are signed by this server key; the provenance fields also by the release signature.
        key: { keyid: key.keyId, publicKey: Buffer.from(key.publicKey).toString('hex') },
        provenance: signStatement(
          provenanceStatement({
            name: m.name,
            version: m.version,
            imageSha256: m.image.sha256,
            sbomSha256: m.sbom.sha256,
            provenance: m.provenance,
          }),
          key,
        ),
        scans: ctx.store.policies.promotions(r.id).map((p) => ({
          to: p.to,
          ts: new Date(p.ts).toISOString(),
          attestation: p.scan.attestation ?? null,
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
        summary: 'Findings across the images devices run, weighted by device count',
      },
    },
    async () => ctx.vulns.fleetExposure(),
  );
}

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
