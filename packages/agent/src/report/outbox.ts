import { mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { atomicWriteFile } from '../fs-util.js';

export interface OutboxItem {
  id: string;
  payload: string;
}

/** Events that must reach the server, kept until the broker acknowledged them. Bounded. */
export interface Outbox {
  add(payload: string): Promise<void>;
  /** Oldest first. */
  list(): Promise<OutboxItem[]>;
  remove(id: string): Promise<void>;
  /** How many events were dropped to stay within the bounds since the last call. */
  takeDropped(): number;
}

interface Bounds {
  maxEvents: number;
  maxBytes: number;
}

/** One file per event in a directory on the data partition (atomic writes, survives power cuts). */
export class FileOutbox implements Outbox {
  private dropped = 0;
  /** Adds run one at a time: each name is derived from the newest one on disk. */
  private adding: Promise<void> = Promise.resolve();
  constructor(
    readonly dir: string,
    private readonly bounds: Bounds,
    /** Wall clock for the names (tests freeze or set it back). */
    private readonly now: () => number = Date.now,
  ) {}

  private async names(): Promise<string[]> {
    await mkdir(this.dir, { recursive: true });
    return (await readdir(this.dir)).filter((n) => n.endsWith('.json')).sort();
  }

  add(payload: string): Promise<void> {
    const run = this.adding.then(() => this.addNow(payload));
    this.adding = run.catch(() => undefined);
    return run;
  }

  /**
   * Names are `<ms>-<n>`, always after the newest name on disk: order survives a restart within
   * the same millisecond (a fresh counter would sort before older events) and a clock set back.
   */
  private nextId(names: string[]): string {
    let ms = this.now();
    let n = 0;
    const m = /^(\d{15})-(\d{6})\.json$/.exec(names.at(-1) ?? '');
    if (m && Number(m[1]) >= ms) {
      ms = Number(m[1]);
      n = Number(m[2]) + 1;
      if (n > 999_999) {
        ms++;
        n = 0;
      }
    }
    return `${ms.toString().padStart(15, '0')}-${n.toString().padStart(6, '0')}`;
  }

  private async addNow(payload: string): Promise<void> {
    const names = await this.names();
    const id = this.nextId(names);
    let bytes = payload.length;
    const sizes: number[] = [];
    for (const n of names) {
      const s = await stat(join(this.dir, n)).then(
        (x) => x.size,
        () => 0,
      );
      sizes.push(s);
      bytes += s;
    }
    let count = names.length + 1;
    for (
      let i = 0;
      i < names.length && (count > this.bounds.maxEvents || bytes > this.bounds.maxBytes);
      i++
    ) {
      await rm(join(this.dir, names[i]!), { force: true });
      count--;
      bytes -= sizes[i]!;
      this.dropped++;
    }
    await atomicWriteFile(join(this.dir, `${id}.json`), payload);
  }

  async list(): Promise<OutboxItem[]> {
    const out: OutboxItem[] = [];
    for (const n of await this.names()) {
      const payload = await readFile(join(this.dir, n), 'utf8').catch(() => null);
      if (payload !== null) out.push({ id: n, payload });
    }
    return out;
  }

  async remove(id: string): Promise<void> {
    await rm(join(this.dir, id), { force: true });
  }

  takeDropped(): number {
    const dropped = this.dropped;
    this.dropped = 0;
    return dropped;
  }
}

export class MemoryOutbox implements Outbox {
  private items: OutboxItem[] = [];
  private counter = 0;
  private dropped = 0;
  constructor(private readonly bounds: Bounds) {}

  async add(payload: string): Promise<void> {
    this.items.push({ id: String(this.counter++), payload });
    while (
      this.items.length > this.bounds.maxEvents ||
      this.items.reduce((n, i) => n + i.payload.length, 0) > this.bounds.maxBytes
    ) {
      this.items.shift();
      this.dropped++;
    }
  }
  async list(): Promise<OutboxItem[]> {
    return [...this.items];
  }
  async remove(id: string): Promise<void> {
    this.items = this.items.filter((i) => i.id !== id);
  }
  takeDropped(): number {
    const dropped = this.dropped;
    this.dropped = 0;
    return dropped;
  }
}
