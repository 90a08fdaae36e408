import { mkdtemp, readFile, realpath, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ImageFormat } from '@flotilla/protocol';
import { ImageError } from './errors.js';
import { runTool } from './exec.js';

/** Most bytes returned for one file by default (the simulator reads small config files). */
const MAX_READ_BYTES = 16 * 1024 * 1024;

/**
 * Reads one file out of a filesystem image without mounting it: ext4 through `debugfs`,
 * squashfs through `unsquashfs -cat`, erofs by extracting with `fsck.erofs --extract`
 * (erofs-utils 1.5 has no cat). The image may be followed by padding (a slot bigger than it).
 * The simulator reads `/etc/flotilla/sim-behaviour.json` from a booted slot with it.
 */
export async function readFileFromImage(
  imagePath: string,
  format: ImageFormat,
  path: string,
  /** A larger bound for a caller that reads big files on purpose (a kernel: 33 MB on arm64). */
  opts: { maxBytes?: number } = {},
): Promise<Buffer> {
  const maxBytes = opts.maxBytes ?? MAX_READ_BYTES;
  if (!path.startsWith('/') || path.includes('\n') || path.includes('"') || path.split('/').includes('..'))
    throw new ImageError('FLOTILLA_ERR_IMAGE_BAD_ARGUMENT', `path '${path}' must be absolute without '..'`);
  if (format === 'ext4') {
    const res = await runTool('debugfs', ['-R', `cat "${path}"`, imagePath], {
      maxStdout: maxBytes,
      allowFailure: true,
    });
    // debugfs prints lookup errors on stderr and still exits 0.
    if (/not found by ext2_lookup|File not found/i.test(res.stderr)) throw notFound(imagePath, path);
    if (res.code !== 0 || /Bad magic|No such file|Can't open|while opening|while trying/i.test(res.stderr))
      throw new ImageError(
        'FLOTILLA_ERR_IMAGE_TOOL_FAILED',
        `debugfs on ${imagePath}: ${res.stderr.trim().slice(0, 400)}`,
      );
    const kind = await runTool('debugfs', ['-R', `stat "${path}"`, imagePath], {
      allowFailure: true,
      maxStdout: 1024 * 1024,
    });
    if (/Type: directory/.test(kind.stdout.toString())) throw notFound(imagePath, `${path} (a directory)`);
    return res.stdout;
  }
  if (format === 'squashfs') {
    const res = await runTool('unsquashfs', ['-cat', imagePath, path], {
      maxStdout: maxBytes,
      allowFailure: true,
    });
    if (res.code !== 0) {
      if (
        /no matches for|does not exist|not found|No such file|is not a file|is a directory/i.test(res.stderr)
      )
        throw notFound(imagePath, path);
      throw new ImageError(
        'FLOTILLA_ERR_IMAGE_TOOL_FAILED',
        `unsquashfs on ${imagePath}: ${res.stderr.trim().slice(0, 400)}`,
      );
    }
    return res.stdout;
  }
  if (format === 'erofs') {
    const dir = await mkdtemp(join(tmpdir(), 'flotilla-erofs-'));
    try {
      await runTool('fsck.erofs', [`--extract=${join(dir, 'x')}`, '--no-preserve', imagePath]);
      try {
        // A symlink inside the image must not lead the read onto the host's filesystem.
        const root = await realpath(join(dir, 'x'));
        const real = await realpath(join(root, path));
        if (!real.startsWith(`${root}/`)) throw notFound(imagePath, `${path} (a link out of the image)`);
        const data = await readFile(real);
        if (data.length > maxBytes)
          throw new ImageError('FLOTILLA_ERR_IMAGE_BAD_ARGUMENT', `${path} larger than ${maxBytes}`);
        return data;
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code === 'ENOENT' || code === 'EISDIR' || code === 'ENOTDIR') throw notFound(imagePath, path);
        throw err;
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  throw new ImageError('FLOTILLA_ERR_IMAGE_BAD_ARGUMENT', `cannot read files from a '${format}' image`);
}

function notFound(image: string, path: string): ImageError {
  return new ImageError('FLOTILLA_ERR_IMAGE_FILE_NOT_FOUND', `${path} in ${image}`);
}
