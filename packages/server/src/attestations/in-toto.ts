import { type KeyPair, signBytes, verifyBytes } from '@flotilla/protocol';
import type { Finding } from '../vulns/match.js';

/**
 * in-toto attestations (Statement v1) in DSSE envelopes, signed with ed25519. Two kinds:
 * SLSA provenance v1 per release — a view of the provenance block of the release manifest, whose
 * fields the release key already signs — and a vulnerability-scan attestation (in-toto's
 * `vulns` predicate v0.1) made at each promotion: which records, when, what was found.
 */

export const PAYLOAD_TYPE = 'application/vnd.in-toto+json';
export const SLSA_PROVENANCE = 'https://slsa.dev/provenance/v1';
export const VULN_SCAN = 'https://in-toto.io/attestation/vulns/v0.1';

export interface DsseEnvelope {
  payloadType: string;
  /** base64 of the canonical statement JSON. */
  payload: string;
  signatures: { keyid: string; sig: string }[];
}

export interface Statement {
  _type: 'https://in-toto.io/Statement/v1';
  subject: { name: string; digest: { sha256: string } }[];
  predicateType: string;
  predicate: Record<string, unknown>;
}

/** DSSE's pre-authentication encoding: what is signed, so the payload type cannot be swapped. */
export function pae(payloadType: string, payload: Buffer): Buffer {
  const type = Buffer.from(payloadType, 'utf8');
  return Buffer.concat([
    Buffer.from(`DSSEv1 ${type.length} `),
    type,
    Buffer.from(` ${payload.length} `),
    payload,
  ]);
}

export function signStatement(statement: Statement, key: KeyPair): DsseEnvelope {
  const payload = Buffer.from(JSON.stringify(statement), 'utf8');
  const sig = signBytes(pae(PAYLOAD_TYPE, payload), key.secretKey);
  return {
    payloadType: PAYLOAD_TYPE,
    payload: payload.toString('base64'),
    signatures: [{ keyid: key.keyId, sig: Buffer.from(sig).toString('hex') }],
  };
}

/** The statement when a signature by `publicKey` verifies over it; null otherwise. */
export function verifyStatement(env: DsseEnvelope, keyId: string, publicKey: Uint8Array): Statement | null {
  if (env.payloadType !== PAYLOAD_TYPE) return null;
  const payload = Buffer.from(env.payload, 'base64');
  const message = pae(env.payloadType, payload);
  const ok = env.signatures.some(
    (s) =>
      s.keyid === keyId &&
      /^[0-9a-f]{128}$/.test(s.sig) &&
      verifyBytes(message, Buffer.from(s.sig, 'hex'), publicKey),
  );
  return ok ? (JSON.parse(payload.toString('utf8')) as Statement) : null;
}

export interface ProvenanceSource {
  name: string;
  version: string;
  imageSha256: string;
  sbomSha256: string;
  provenance: {
    builder: string;
    sourceRevision: string;
    buildTime: string;
    inputs: { name: string; sha256: string }[];
  };
}

export function provenanceStatement(r: ProvenanceSource): Statement {
  return {
    _type: 'https://in-toto.io/Statement/v1',
    subject: [
      { name: `${r.name}-${r.version}.img`, digest: { sha256: r.imageSha256 } },
      { name: `${r.name}-${r.version}.cdx.json`, digest: { sha256: r.sbomSha256 } },
    ],
    predicateType: SLSA_PROVENANCE,
    predicate: {
      buildDefinition: {
        buildType: 'https://flotilla.dev/image-build/v1',
        externalParameters: { sourceRevision: r.provenance.sourceRevision, version: r.version },
        resolvedDependencies: r.provenance.inputs.map((i) => ({
          name: i.name,
          digest: { sha256: i.sha256 },
        })),
      },
      runDetails: { builder: { id: r.provenance.builder }, metadata: { finishedOn: r.provenance.buildTime } },
    },
  };
}

export interface ScanFacts {
  imageName: string;
  imageSha256: string;
  importId: number | null;
  recordsModified: number | null;
  scannedAt: number;
  findings: Finding[];
}

export function scanStatement(s: ScanFacts): Statement {
  const at = new Date(s.scannedAt).toISOString();
  return {
    _type: 'https://in-toto.io/Statement/v1',
    subject: [{ name: s.imageName, digest: { sha256: s.imageSha256 } }],
    predicateType: VULN_SCAN,
    predicate: {
      scanner: {
        uri: 'https://flotilla.dev/vulns',
        version: '1',
        db: {
          uri: 'osv',
          version: s.importId === null ? 'none' : `import-${s.importId}`,
          ...(s.recordsModified ? { lastModified: new Date(s.recordsModified).toISOString() } : {}),
        },
        result: s.findings.map((f) => ({
          id: f.id,
          severity: [
            {
              method: f.score === null ? 'label' : 'CVSSv3',
              score: f.score === null ? f.severity : String(f.score),
            },
          ],
          annotations: [{ package: f.package, installed: f.installed, fixed: f.fixed }],
        })),
      },
      metadata: { scanStartedOn: at, scanFinishedOn: at },
    },
  };
}
