import { ServerError } from '../errors.js';

/** One admitted upload: what it holds of the shared temporary space, given back by `release`. */
export interface UploadTicket {
  /** Claims `bytes` more temporary space; throws FLOTILLA_ERR_SERVER_UPLOAD_SPACE past the budget. */
  reserve(bytes: number): void;
  release(): void;
}

/**
 * Bounds uploads as a whole: how many run at once and how many temporary bytes they hold
 * together. One upload's own size cap (maxUploadBytes) is checked by the meter on its stream.
 */
export class UploadBudget {
  private running = 0;
  private held = 0;

  constructor(private readonly limits: { maxConcurrentUploads: number; maxUploadTempBytes: number }) {}

  get inFlight(): number {
    return this.running;
  }

  get heldBytes(): number {
    return this.held;
  }

  /** Admits an upload or refuses it at once (503): a refused upload has not read a byte. */
  admit(): UploadTicket {
    if (this.running >= this.limits.maxConcurrentUploads)
      throw new ServerError(
        'FLOTILLA_ERR_SERVER_UPLOADS_BUSY',
        `${this.running} uploads running, at most ${this.limits.maxConcurrentUploads}`,
      );
    this.running++;
    let mine = 0;
    let open = true;
    return {
      reserve: (bytes) => {
        if (!open) return;
        if (this.held + bytes > this.limits.maxUploadTempBytes)
          throw new ServerError(
            'FLOTILLA_ERR_SERVER_UPLOAD_SPACE',
            `${this.held + bytes} bytes over the ${this.limits.maxUploadTempBytes}-byte budget`,
          );
        this.held += bytes;
        mine += bytes;
      },
      release: () => {
        if (!open) return;
        open = false;
        this.running--;
        this.held -= mine;
      },
    };
  }
}
