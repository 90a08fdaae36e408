import { type Db, openDb } from './db.js';
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

/** The SQLite store: one repository per aggregate over one connection (SQLite has a single writer anyway). */
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

  constructor(readonly db: Db) {
    this.devices = new DevicesRepo(db);
    this.events = new EventsRepo(db);
    this.provisioning = new ProvisioningRepo(db);
    this.artifacts = new ArtifactsRepo(db);
    this.releases = new ReleasesRepo(db);
    this.deltas = new DeltasRepo(db);
    this.rollouts = new RolloutsRepo(db);
    this.deployments = new DeploymentsRepo(db);
    this.tokens = new TokensRepo(db);
    this.audit = new AuditRepo(db);
    this.nonces = new NoncesRepo(db);
    this.vulns = new VulnsRepo(db);
    this.policies = new PoliciesRepo(db);
    this.versionSamples = new VersionSamplesRepo(db);
  }

  static open(file: string): Store {
    return new Store(openDb(file));
  }

  /** Runs fn in one transaction (nested calls become savepoints): all of it or nothing. */
  tx<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
