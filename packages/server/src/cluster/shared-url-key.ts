import { writeFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { readUrlSigningSecret, UrlSigner } from '../artifacts/url-signer.js';
import type { Sql } from '../store/sql.js';
import { agreeOnSecret } from '../store/sql-cluster-secrets.js';

/**
 * The URL-signing key of a node sharing a database: the cluster's one. The first node to start
 * puts its key (its `url-signing.key`, made if missing) in the database; every other node takes
 * that one and writes it to its own file, so a URL signed anywhere is good everywhere and no
 * operator has to copy the file between nodes.
 */
export async function sharedUrlSigner(path: string, sql: Sql, log: Logger, now: number): Promise<UrlSigner> {
  const local = readUrlSigningSecret(path);
  const agreed = await agreeOnSecret(sql, 'url-signing', local, now);
  if (agreed !== local) {
    writeFileSync(path, `${agreed}\n`, { mode: 0o600 });
    log.info(
      { file: path },
      "url-signing.key replaced by the cluster's (set by the first node that started)",
    );
  }
  return UrlSigner.fromSecret(Buffer.from(agreed, 'hex'));
}
