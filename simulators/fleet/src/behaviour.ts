import { stat } from 'node:fs/promises';
import { readFileFromImage } from '@flotilla/image';
import type { ImageFormat } from '@flotilla/protocol';
import { SimError } from './errors.js';
import { sha256OfFile } from './slot-store.js';

/**
 * What a simulated device does when it boots an image: the image itself says so in
 * `/etc/flotilla/sim-behaviour.json` (docs/images.md#5-demo-firmware-firmware-images). A slot that holds no readable image
 * does not boot, like a real board with a garbage rootfs.
 */
export interface SimBehaviour {
  boots: boolean;
  healthy: boolean;
  healthReason: string | null;
}

export const BEHAVIOUR_PATH = '/etc/flotilla/sim-behaviour.json';
export const RELEASE_PATH = '/etc/flotilla/release';

export interface BootView {
  behaviour: SimBehaviour;
  /** `/etc/flotilla/release` of the image, or null when unreadable. */
  release: string | null;
  /** Why the image does not boot when it cannot be read. */
  unreadable?: string;
}

export type ImageFileReader = (imagePath: string, format: ImageFormat, path: string) => Promise<Buffer>;

export function parseBehaviour(text: string): SimBehaviour {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (cause) {
    throw new SimError('FLOTILLA_ERR_SIM_BEHAVIOUR', 'not JSON', { cause });
  }
  const behaviour = parsed as Partial<SimBehaviour>;
  if (
    typeof behaviour !== 'object' ||
    behaviour === null ||
    typeof behaviour.boots !== 'boolean' ||
    typeof behaviour.healthy !== 'boolean' ||
    !(
      behaviour.healthReason === null ||
      behaviour.healthReason === undefined ||
      typeof behaviour.healthReason === 'string'
    )
  )
    throw new SimError(
      'FLOTILLA_ERR_SIM_BEHAVIOUR',
      'expected {boots: bool, healthy: bool, healthReason: string|null}',
    );
  return { boots: behaviour.boots, healthy: behaviour.healthy, healthReason: behaviour.healthReason ?? null };
}

/**
 * Reads the boot view of slot images, cached by content: devices that hold the same bytes boot
 * the same way, so the debugfs read runs once per distinct image, not once per device boot.
 * A file whose identity (inode, size, mtime) was seen before skips even the hash.
 */
export class BehaviourReader {
  private readonly byContent = new Map<string, Promise<BootView>>();
  private readonly byIdentity = new Map<string, string>();

  constructor(
    private readonly format: ImageFormat,
    private readonly reader: ImageFileReader = readFileFromImage,
  ) {}

  async read(slotPath: string | null): Promise<BootView> {
    if (slotPath === null) return unbootable('slot is empty');
    let id: string;
    try {
      const st = await stat(slotPath);
      id = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch (err) {
      return unbootable(`slot file unreadable (${(err as { code?: string }).code ?? err})`);
    }
    let sha = this.byIdentity.get(id);
    if (!sha) {
      sha = await sha256OfFile(slotPath);
      this.byIdentity.set(id, sha);
    }
    let view = this.byContent.get(sha);
    if (!view) {
      view = this.load(slotPath);
      this.byContent.set(sha, view);
    }
    return view;
  }

  private async load(slotPath: string): Promise<BootView> {
    let behaviour: SimBehaviour;
    try {
      behaviour = parseBehaviour((await this.reader(slotPath, this.format, BEHAVIOUR_PATH)).toString('utf8'));
    } catch (err) {
      if ((err as { code?: string }).code === 'FLOTILLA_ERR_IMAGE_TOOL_MISSING') throw err;
      return unbootable(`no readable ${BEHAVIOUR_PATH}: ${(err as Error).message}`);
    }
    let release: string | null = null;
    try {
      release = (await this.reader(slotPath, this.format, RELEASE_PATH)).toString('utf8').trim() || null;
    } catch {}
    return { behaviour, release };
  }
}

function unbootable(why: string): BootView {
  return { behaviour: { boots: false, healthy: false, healthReason: why }, release: null, unreadable: why };
}
