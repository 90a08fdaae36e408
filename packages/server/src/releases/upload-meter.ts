import type { UploadTicket } from '../artifacts/upload-budget.js';
import { ServerError } from '../errors.js';

/** What a build upload's first bytes must be, by its declared `input` (a raw image has no magic). */
const LEADING_MAGIC: Record<string, Buffer> = {
  'tar.gz': Buffer.from([0x1f, 0x8b]),
  'tar.zst': Buffer.from([0x28, 0xb5, 0x2f, 0xfd]),
  'tar.xz': Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]),
};
const TAR_BLOCK = 512;

/** A tar header block's checksum (bytes 148-155 counted as spaces) equals the octal it stores. */
function isTarHeader(block: Buffer): boolean {
  const stored = Number.parseInt(block.subarray(148, 156).toString('latin1').replace(/\0.*$/s, '').trim(), 8);
  if (!Number.isSafeInteger(stored)) return false;
  let sum = 0;
  for (let i = 0; i < TAR_BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
  return sum === stored;
}

/**
 * The check a build upload's first bytes must pass, or null when its kind has none. It gets the
 * leading bytes once `need` of them arrived (or all of a shorter upload) and throws to refuse.
 */
export function leadingBytesCheck(input: string): { need: number; check(head: Buffer): void } | null {
  const refuse = (what: string) => {
    throw new ServerError('FLOTILLA_ERR_SERVER_UPLOAD_INVALID', `the upload does not start like ${what}`);
  };
  const magic = LEADING_MAGIC[input];
  if (magic)
    return {
      need: magic.length,
      check: (head) => {
        if (head.length < magic.length || !head.subarray(0, magic.length).equals(magic))
          refuse(`a ${input} file`);
      },
    };
  if (input === 'tar')
    return {
      need: TAR_BLOCK,
      check: (head) => {
        if (head.length < TAR_BLOCK || !isTarHeader(head.subarray(0, TAR_BLOCK))) refuse('a tar archive');
      },
    };
  return null;
}

export interface MeterOptions {
  /** One upload's cap (limits.maxUploadBytes). */
  maxBytes: number;
  /** Every byte received is held temporary space until the upload ends. */
  ticket: UploadTicket;
  /** Checked as soon as the leading bytes are in, before the rest is read. */
  leading?: { need: number; check(head: Buffer): void } | null;
}

/**
 * Passes an upload's bytes on as they arrive, stopping at the first one over a bound or after a
 * bad start: the consumer (bundle reader, temp file) never sees a byte these checks refused.
 */
export async function* meterUpload(body: AsyncIterable<Buffer>, opts: MeterOptions): AsyncGenerator<Buffer> {
  let size = 0;
  let head: Buffer[] | null = opts.leading ? [] : null;
  let headBytes = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > opts.maxBytes)
      throw new ServerError('FLOTILLA_ERR_SERVER_UPLOAD_TOO_LARGE', `over ${opts.maxBytes} bytes`);
    opts.ticket.reserve(chunk.length);
    if (head) {
      head.push(chunk);
      headBytes += chunk.length;
      if (headBytes < opts.leading!.need) continue;
      opts.leading!.check(Buffer.concat(head, headBytes));
      const held = head;
      head = null;
      yield* held;
      continue;
    }
    yield chunk;
  }
  if (head) {
    opts.leading!.check(Buffer.concat(head, headBytes));
    yield* head;
  }
}
