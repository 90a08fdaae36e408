import { describe, expect, it } from 'vitest';
import { buildGpt, GPT_TYPES, isImageError, parseGpt, SECTOR } from '../src/index.js';

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
