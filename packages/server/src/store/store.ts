import { ArtifactsRepo } from './repos/artifacts.js';
import { AuditRepo } from './repos/audit.js';
import { DeltasRepo } from './repos/deltas.js';
import { DeploymentsRepo } from './repos/deployments.js';
import { DevicesRepo } from './repos/devices.js';
import { EventsRepo } from './repos/events.js';
import { NoncesRepo } from './repos/nonces.js';
import { PoliciesRepo } from './repos/policies.js';
import { ProvisioningRepo } from './repos/provisioning.js';
import { ReleasesRepo } from './repos/releases.js';
import { RolloutsRepo } from './repos/rollouts.js';
import { TokensRepo } from './repos/tokens.js';
import { VersionSamplesRepo } from './repos/version-samples.js';
import { VulnsRepo } from './repos/vulns.js';
import type { Sql, SqlDriver } from './sql.js';
import { SqliteDriver } from './sqlite-driver.js';

/**
 * The store: one repository per aggregate, every call asynchronous, over a `Sql` — a driver's
 * connection (SQLite, the embedded default, or PostgreSQL) or one transaction on it. This class
 * is the store's whole public shape; both engines are used through it.
 */
export class Store {
  readonly devices: DevicesRepo;
  readonly events: EventsRepo;
  readonly provisioning: ProvisioningRepo;
  readonly artifacts: ArtifactsRepo;
  readonly releases: ReleasesRepo;
  readonly deltas: DeltasRepo;
  readonly rollouts: RolloutsRepo;
  readonly deployments: DeploymentsRepo;
  readonly tokens: TokensRepo;
  readonly audit: AuditRepo;
  readonly nonces: NoncesRepo;
  readonly vulns: VulnsRepo;
  readonly policies: PoliciesRepo;
  readonly versionSamples: VersionSamplesRepo;

  /** `driver` is set on the root store (it owns the connection); a transaction's store has none. */
  constructor(
    readonly sql: Sql,
    private readonly driver: SqlDriver | null = null,
  ) {
    this.devices = new DevicesRepo(sql);
    this.events = new EventsRepo(sql);
    this.provisioning = new ProvisioningRepo(sql);
    this.artifacts = new ArtifactsRepo(sql);
    this.releases = new ReleasesRepo(sql);
    this.deltas = new DeltasRepo(sql);
    this.rollouts = new RolloutsRepo(sql);
    this.deployments = new DeploymentsRepo(sql);
    this.tokens = new TokensRepo(sql);
    this.audit = new AuditRepo(sql);
    this.nonces = new NoncesRepo(sql);
    this.vulns = new VulnsRepo(sql);
    this.policies = new PoliciesRepo(sql);
    this.versionSamples = new VersionSamplesRepo(sql);
  }

  /** A store on a driver, its schema migrated (closes the driver when that fails). */
  static async fromDriver(driver: SqlDriver): Promise<Store> {
    try {
      await driver.migrate();
    } catch (err) {
      await driver.close();
      throw err;
    }
    return new Store(driver, driver);
  }

  /** The embedded store: an SQLite file (created when missing), migrated. */
  static open(file: string): Promise<Store> {
    return Store.fromDriver(SqliteDriver.open(file));
  }

  /**
   * Runs fn in one transaction (nested calls become savepoints): all of it or nothing. fn gets a
   * store bound to the transaction and must use only that one: on SQLite the root store waits
   * until the transaction ends.
   */
  tx<T>(fn: (tx: Store) => Promise<T>): Promise<T> {
    return this.sql.tx((sql) => fn(new Store(sql)));
  }

  async close(): Promise<void> {
    await this.driver?.close();
  }
}
