import type { Duplex } from 'node:stream';

/**
 * aedes has no packet size limit: it would buffer a 256 MB PUBLISH before any hook sees it.
 * This watches the MQTT fixed headers going by (type byte + "remaining length" varint) and
 * destroys the connection as soon as a frame announces more than `maxFrameBytes`.
 */
export function guardFrames(stream: Duplex, maxFrameBytes: number, onOversize: () => void): void {
  // Parser state across chunks: bytes still to skip in the current frame, or header bytes so far.
  let skip = 0;
  let header: number[] = [];
  stream.on('data', (chunk: Buffer) => {
    let i = 0;
    while (i < chunk.length) {
      if (skip > 0) {
        const n = Math.min(skip, chunk.length - i);
        skip -= n;
        i += n;
        continue;
      }
      header.push(chunk[i]!);
      i++;
      if (header.length === 1) continue; // type and flags
      const last = header[header.length - 1]!;
      if (last & 0x80) {
        if (header.length > 5) return kill(); // a length varint has at most 4 bytes
        continue;
      }
      let length = 0;
      for (let k = header.length - 1; k >= 1; k--) length = length * 128 + (header[k]! & 0x7f);
      header = [];
      if (length > maxFrameBytes) return kill();
      skip = length;
    }
  });
  function kill(): void {
    onOversize();
    stream.destroy();
  }
}
