import { type ErrorEntry, errorClass } from '@flotilla/protocol';

/**
 * The error registry of `@flotilla/image` (builder, release, bundle, disk, flash). Codes are
 * stable: the CLI prints them, the agent reports them for local installs. Trust failures of a
 * bundle's manifest keep protocol's codes (FLOTILLA_ERR_SIGNATURE_*, FLOTILLA_ERR_KEY_*, …).
 */
export const IMAGE_ERRORS = {
  FLOTILLA_ERR_IMAGE_INPUT_MISSING: {
    status: 400,
    message: 'image input does not exist',
    hint: 'pass an existing rootfs directory, .tar/.tar.gz/.tar.zst file or raw image',
  },
  FLOTILLA_ERR_IMAGE_INPUT_INVALID: {
    status: 400,
    message: 'image input cannot be used',
    hint: 'see the message: unsupported file type, unsafe tar member or unreadable file',
  },
  FLOTILLA_ERR_IMAGE_TOO_LARGE: {
    status: 413,
    message: 'content does not fit into the partition',
    hint: 'raise the partition size or remove files from the rootfs',
  },
  FLOTILLA_ERR_IMAGE_BAD_ARGUMENT: {
    status: 400,
    message: 'invalid argument',
    hint: 'check the option named in the message',
  },
  FLOTILLA_ERR_IMAGE_TOOL_MISSING: {
    status: 500,
    message: 'a required system tool is not installed',
    hint: 'install e2fsprogs, squashfs-tools, erofs-utils and u-boot-tools (see docs/images.md)',
  },
  FLOTILLA_ERR_IMAGE_TOOL_FAILED: {
    status: 500,
    message: 'a filesystem tool failed',
    hint: 'the tool output is in the message; check the input tree and the partition size',
  },
  FLOTILLA_ERR_IMAGE_FILE_NOT_FOUND: {
    status: 404,
    message: 'file not found inside the image',
    hint: 'check the path (absolute, inside the image) and the image format',
  },
  FLOTILLA_ERR_IMAGE_RECIPE_INVALID: {
    status: 400,
    message: 'firmware recipe is invalid',
    hint: 'fix the recipe field named in the message',
  },
  FLOTILLA_ERR_IMAGE_KEY_MISSING: {
    status: 400,
    message: 'no signing key of the needed role',
    hint: 'pass --key with a key file of the right role, or --keys with a directory made by `flotilla keys init`',
  },
  FLOTILLA_ERR_IMAGE_KEY_ROLE: {
    status: 400,
    message: 'signing key has the wrong role for this release kind',
    hint: 'releases are signed by a release key, recovery images by a recovery key',
  },
  FLOTILLA_ERR_BUNDLE_SBOM_MISMATCH: {
    status: 400,
    message: 'SBOM does not match the digest in the signed manifest',
    hint: 'the SBOM was altered or belongs to another release; rebuild the bundle',
  },
  FLOTILLA_ERR_IMAGE_IO: {
    status: 500,
    message: 'cannot read or write a file',
    hint: 'check that the path exists and is readable, and its directory writable',
  },
  // bundle file (.flot)
  FLOTILLA_ERR_BUNDLE_NOT_A_BUNDLE: {
    status: 400,
    message: 'not a Flotilla bundle (bad magic)',
    hint: 'pass a .flot file made by `flotilla bundle create`',
  },
  FLOTILLA_ERR_BUNDLE_HEADER_TOO_LARGE: {
    status: 413,
    message: 'bundle header is larger than allowed',
    hint: 'the file is corrupt or hostile; obtain the bundle again',
  },
  FLOTILLA_ERR_BUNDLE_HEADER_INVALID: {
    status: 400,
    message: 'bundle header is invalid',
    hint: 'the file is corrupt or was made by an incompatible tool',
  },
  FLOTILLA_ERR_BUNDLE_TRUNCATED: {
    status: 400,
    message: 'bundle ends early',
    hint: 'the copy is incomplete: copy or download it again',
  },
  FLOTILLA_ERR_BUNDLE_TRAILING_DATA: {
    status: 400,
    message: 'bundle has bytes after its last section',
    hint: 'the file was altered or concatenated; obtain the bundle again',
  },
  FLOTILLA_ERR_BUNDLE_CHUNK_MISMATCH: {
    status: 400,
    message: 'image chunk does not match its signed hash',
    hint: 'the payload was altered or corrupted; obtain the bundle again',
  },
  FLOTILLA_ERR_BUNDLE_IMAGE_MISMATCH: {
    status: 400,
    message: 'image does not match the signed manifest',
    hint: 'the payload was altered or corrupted; obtain the bundle again',
  },
  FLOTILLA_ERR_BUNDLE_SECTION_MISMATCH: {
    status: 400,
    message: 'bundle sections do not match the signed manifest',
    hint: 'the bundle was assembled wrongly or altered; rebuild it with `flotilla bundle create`',
  },
  // disk images and flashing
  FLOTILLA_ERR_IMAGE_TARGET_MOUNTED: {
    status: 409,
    message: 'target is in use (mounted, held or backing a loop device)',
    hint: 'unmount the target and all of its partitions first',
  },
  FLOTILLA_ERR_IMAGE_TARGET_TOO_SMALL: {
    status: 409,
    message: 'target is smaller than the image',
    hint: 'use a larger device, or a smaller data partition for disk images',
  },
  FLOTILLA_ERR_IMAGE_TARGET_PARTITIONED: {
    status: 409,
    message: 'target holds a partition table: it is a whole disk, not one slot partition',
    hint: 'pass the slot partition itself (e.g. /dev/mmcblk0p2), or flash the whole disk without --partition; --force writes over the partition table',
  },
  FLOTILLA_ERR_IMAGE_TARGET_INVALID: {
    status: 400,
    message: 'target cannot be written',
    hint: 'pass a block device or a regular file path',
  },
  FLOTILLA_ERR_IMAGE_DISK_TOO_SMALL: {
    status: 400,
    message: 'the disk is too small for the factory layout',
    hint: 'pass a larger --disk-size, or smaller --slot-size / --data-size (the layout is in the message)',
  },
  FLOTILLA_ERR_IMAGE_NO_KERNEL: {
    status: 400,
    message: 'the rootfs has no kernel where the boot contract puts it',
    hint: 'put the kernel at /boot/vmlinuz and the initramfs at /boot/initrd.img in the rootfs (docs/boot.md)',
  },
  FLOTILLA_ERR_IMAGE_UNKNOWN_ARCH: {
    status: 400,
    message: 'unknown architecture',
    hint: 'pass --arch x86_64 (GRUB EFI) or --arch aarch64 (U-Boot)',
  },
  // pinned inputs of the firmware-images recipes (firmware-images/boot/packages.<arch>.lock)
  FLOTILLA_ERR_IMAGE_PIN_MISMATCH: {
    status: 500,
    message: 'a pinned input does not match the sha256 in its lock',
    hint: 'delete the cached file named in the message to fetch it again, or update the lock if the new file is intended',
  },
  FLOTILLA_ERR_IMAGE_FETCH_FAILED: {
    status: 500,
    message: 'a pinned input could not be fetched',
    hint: 'run `apt-get update` (debs) or check the npm registry (Node), then build again; the tool output is in the message',
  },
  FLOTILLA_ERR_IMAGE_READBACK_MISMATCH: {
    status: 500,
    message: 'data read back from the target differs from what was written',
    hint: 'the medium may be failing; try again or replace it',
  },
} as const satisfies Record<string, ErrorEntry>;

export type ImageErrorCode = keyof typeof IMAGE_ERRORS;

/** Same shape as every Flotilla error: stable code, message, status, hint, component, cause. */
export class ImageError extends errorClass(IMAGE_ERRORS, 'image', 'ImageError') {}

export function isImageError(err: unknown, code?: ImageErrorCode): err is ImageError {
  return err instanceof ImageError && (code === undefined || err.code === code);
}

/** Wraps an fs error as FLOTILLA_ERR_IMAGE_IO, naming the system code, unless it already carries a Flotilla code. */
export function ioError(what: string, err: unknown): Error {
  if (
    typeof (err as { code?: unknown })?.code === 'string' &&
    (err as { code: string }).code.startsWith('FLOTILLA_ERR_')
  )
    return err as Error;
  const sys = err as { code?: unknown; message?: unknown };
  const why = typeof sys.code === 'string' ? sys.code : String(sys.message ?? err);
  return new ImageError('FLOTILLA_ERR_IMAGE_IO', `${what} (${why})`, { cause: err });
}
