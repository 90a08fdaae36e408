import { pipeline, type Readable, Transform } from 'node:stream';

/**
 * Passes `source` through unchanged and reports each chunk's size as it is handed on to the
 * response, so a download cut short counts only what went out (plus at most what the socket had
 * buffered). Destroying the returned stream (client gone) closes the source too.
 */
export function countedStream(source: Readable, onBytes: (n: number) => void): Readable {
  const counter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      onBytes(chunk.length);
      done(null, chunk);
    },
  });
  pipeline(source, counter, () => {});
  return counter;
}
