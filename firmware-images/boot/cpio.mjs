// A reproducible initramfs: an uncompressed "newc" cpio archive (what the kernel unpacks), gzipped.
// Entries are written in the order given with fixed owner and time, so equal inputs give equal bytes.
import { gzipSync } from 'node:zlib';

const hex8 = (n) => n.toString(16).padStart(8, '0');
const pad4 = (n) => (4 - (n % 4)) % 4;

/**
 * entries: { path, type: 'dir'|'file'|'symlink'|'char', mode, data?: Buffer, target?: string,
 * major?, minor? }; paths without a leading slash (`init`, `bin/busybox`).
 */
export function makeCpio(entries, mtime) {
  const parts = [];
  let ino = 1;
  const push = (name, mode, data, rdev = [0, 0]) => {
    const nameBuf = Buffer.from(`${name}\0`);
    const header =
      '070701' +
      [ino++, mode, 0, 0, 1, mtime, data.length, 0, 0, rdev[0], rdev[1], nameBuf.length, 0]
        .map(hex8)
        .join('');
    parts.push(Buffer.from(header), nameBuf, Buffer.alloc(pad4(110 + nameBuf.length)));
    parts.push(data, Buffer.alloc(pad4(data.length)));
  };
  for (const e of entries) {
    if (e.type === 'dir') push(e.path, 0o040000 | (e.mode ?? 0o755), Buffer.alloc(0));
    else if (e.type === 'file') push(e.path, 0o100000 | (e.mode ?? 0o644), e.data);
    else if (e.type === 'symlink') push(e.path, 0o120777, Buffer.from(e.target));
    else if (e.type === 'char')
      push(e.path, 0o020000 | (e.mode ?? 0o600), Buffer.alloc(0), [e.major, e.minor]);
    else throw new Error(`cpio: unknown entry type ${e.type}`);
  }
  push('TRAILER!!!', 0, Buffer.alloc(0));
  return gzipSync(Buffer.concat(parts), { level: 9 });
}
