import { describe, expect, it } from 'vitest';
import { buildGpt, GPT_TYPES, isImageError, parseGpt, planDisk, SECTOR } from '../src/index.js';

const DISK_BYTES = 8 * 1024 * 1024;
const DISK_GUID = '11111111-2222-4333-8444-555555555555';
const table = () =>
  buildGpt(DISK_BYTES, DISK_GUID, [
    {
      name: 'rootfs-A',
      typeGuid: GPT_TYPES.linuxData,
      guid: '66666666-7777-4888-9999-aaaaaaaaaaaa',
      firstLba: 2048,
      lastLba: 4095,
    },
  ]).head;

describe('parseGpt', () => {
  it('reads back the partitions of a table it built', () => {
    expect(parseGpt(table()).partitions.map((partition) => partition.name)).toEqual(['rootfs-A']);
  });

  it.each([
    ['a missing signature', SECTOR, /no GPT signature/],
    ['a damaged header (bit flip)', SECTOR + 40, /GPT header CRC mismatch/],
    ['damaged partition entries (bit flip)', 2 * SECTOR + 60, /GPT entries CRC mismatch/],
  ])('refuses %s with a coded error, not a bare Error', (_what, offset, message) => {
    const damaged = table();
    damaged.writeUInt8(damaged.readUInt8(offset) ^ 0xff, offset);
    let thrown: unknown;
    try {
      parseGpt(damaged);
    } catch (err) {
      thrown = err;
    }
    expect(isImageError(thrown, 'FLOTILLA_ERR_IMAGE_INPUT_INVALID')).toBe(true);
    expect((thrown as Error).message).toMatch(message);
  });
});

describe('buildGpt', () => {
  const partition = {
    name: 'rootfs-A',
    typeGuid: GPT_TYPES.linuxData,
    guid: '66666666-7777-4888-9999-aaaaaaaaaaaa',
    firstLba: 2048,
    lastLba: 4095,
  };
  it.each([
    [
      'a disk size that is not whole sectors',
      () => buildGpt(DISK_BYTES + 1, DISK_GUID, [partition]),
      /not a multiple of 512/,
    ],
    ['a bad disk GUID', () => buildGpt(DISK_BYTES, 'not-a-guid', [partition]), /bad GUID not-a-guid/],
    [
      'a partition past the end of the disk',
      () => buildGpt(DISK_BYTES, DISK_GUID, [{ ...partition, lastLba: DISK_BYTES / SECTOR }]),
      /rootfs-A outside the usable area/,
    ],
    [
      'a partition name longer than 36 characters',
      () => buildGpt(DISK_BYTES, DISK_GUID, [{ ...partition, name: 'x'.repeat(37) }]),
      /longer than 36 characters/,
    ],
    [
      'more than 128 partitions',
      () =>
        buildGpt(
          DISK_BYTES,
          DISK_GUID,
          Array.from({ length: 129 }, () => partition),
        ),
      /129 partitions, at most 128/,
    ],
  ])('refuses %s with FLOTILLA_ERR_IMAGE_BAD_ARGUMENT, not a bare RangeError', (_what, build, message) => {
    let thrown: unknown;
    try {
      build();
    } catch (err) {
      thrown = err;
    }
    expect(isImageError(thrown, 'FLOTILLA_ERR_IMAGE_BAD_ARGUMENT')).toBe(true);
    expect((thrown as Error).message).toMatch(message);
  });
});

describe('planDisk', () => {
  it('refuses a --disk-size that is not whole sectors with FLOTILLA_ERR_IMAGE_BAD_ARGUMENT', () => {
    const manifest = { name: 'demo', image: { size: 1024 * 1024 } } as Parameters<typeof planDisk>[0];
    let thrown: unknown;
    try {
      planDisk(manifest, { diskSize: 64 * 1024 * 1024 + 100 });
    } catch (err) {
      thrown = err;
    }
    expect(isImageError(thrown, 'FLOTILLA_ERR_IMAGE_BAD_ARGUMENT')).toBe(true);
    expect((thrown as Error).message).toContain('--disk-size');
  });
});
