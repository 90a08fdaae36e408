// One virtual board in QEMU (TCG: no KVM here), its serial console captured line by line with
// host timestamps. Every start appends to the same serial log; kill() is the power cut (SIGKILL).
import { spawn } from 'node:child_process';
import { copyFileSync, createWriteStream } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd';
const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd';

export class Vm {
  /**
   * opts: { arch, disk, logPath, workDir, forwards: [{ guestHost, guestPort, hostPort }], memMiB,
   *   ubootBin (aarch64: the U-Boot the board starts) }
   */
  constructor(opts) {
    this.opts = opts;
    this.lines = []; // { t: ms since epoch, text }
    this.child = null;
    this.exited = null;
    this.log = createWriteStream(opts.logPath, { flags: 'a' });
    this.powerOns = 0;
  }

  argv() {
    const o = this.opts;
    const net = [
      'user',
      'id=n0',
      'restrict=on',
      ...o.forwards.map(
        (f) =>
          `guestfwd=tcp:${f.guestHost}:${f.guestPort}-cmd:node ${join(here, 'guestfwd-pipe.mjs')} ${f.hostPort}`,
      ),
    ].join(',');
    if (o.arch === 'aarch64')
      return [
        'qemu-system-aarch64',
        ['-M', 'virt', '-cpu', 'cortex-a57', '-m', String(o.memMiB ?? 1024), '-smp', '1'],
        ['-nodefaults', '-no-user-config', '-display', 'none', '-serial', 'stdio', '-monitor', 'none'],
        // our U-Boot (Debian source, env on the SD card) is the board's firmware
        ['-bios', o.ubootBin],
        // the disk is an SD card: U-Boot's MMC driver and Linux's mmcblk0 reach the same bytes,
        // the U-Boot environment included (its size must be a power of two)
        ['-device', 'sdhci-pci', '-device', 'sd-card,drive=sd'],
        ['-drive', `if=none,id=sd,file=${o.disk},format=raw,cache=writethrough`],
        ['-netdev', net, '-device', 'virtio-net-pci,netdev=n0'],
        ['-device', 'i6300esb', '-action', 'watchdog=reset'],
      ].flat();
    if (o.arch !== 'x86_64') throw new Error(`no QEMU machine for ${o.arch} in this harness`);
    const vars = join(o.workDir, 'OVMF_VARS.fd');
    if (this.powerOns === 0) copyFileSync(OVMF_VARS, vars);
    return [
      'qemu-system-x86_64',
      ['-M', 'q35', '-m', String(o.memMiB ?? 1024), '-smp', '1', '-nodefaults', '-no-user-config'],
      ['-display', 'none', '-serial', 'stdio', '-monitor', 'none'],
      ['-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_CODE}`],
      ['-drive', `if=pflash,format=raw,unit=1,file=${vars}`],
      // writethrough: what the guest wrote reaches the image file at once; a SIGKILL loses only
      // what the guest itself still held (its page cache), as a power cut does
      ['-drive', `file=${o.disk},format=raw,if=virtio,cache=writethrough`],
      ['-netdev', net, '-device', 'virtio-net-pci,netdev=n0'],
      // the board's watchdog: the initramfs arms it, a boot that hangs is reset
      ['-device', 'i6300esb', '-action', 'watchdog=reset'],
    ].flat();
  }

  start() {
    if (this.child) throw new Error('VM already running');
    const [bin, ...args] = this.argv();
    this.powerOns += 1;
    this.log.write(
      `\n===== flotilla boot-test: power on #${this.powerOns} at ${new Date().toISOString()} =====\n`,
    );
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    let partial = '';
    child.stdout.on('data', (b) => {
      this.log.write(b);
      const text = partial + b.toString('latin1');
      const parts = text.split(/\r?\n/);
      partial = parts.pop() ?? '';
      const t = Date.now();
      for (const line of parts) this.lines.push({ t, text: line });
    });
    child.stderr.on('data', (b) => this.log.write(`[qemu stderr] ${b}`));
    child.on('exit', () => {
      if (partial) this.lines.push({ t: Date.now(), text: partial });
      partial = '';
      this.child = null;
    });
  }

  get running() {
    return this.child !== null;
  }

  /** Index of the next line to be captured (a cursor for waitFor). */
  mark() {
    return this.lines.length;
  }

  /**
   * Waits for a serial line matching `re` at or after line `from`; bounded by `timeoutMs`.
   * Resolves { index, line, match }; rejects on timeout, or if QEMU exits and `allowExit` is false.
   */
  async waitFor(re, { from = 0, timeoutMs, what = String(re) }) {
    const deadline = Date.now() + timeoutMs;
    let i = from;
    for (;;) {
      for (; i < this.lines.length; i++) {
        const m = re.exec(this.lines[i].text);
        if (m) return { index: i, line: this.lines[i], match: m };
      }
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      if (!this.child) throw new Error(`QEMU exited while waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Kernel starts (one per boot) counted from line `from`. */
  boots(from = 0) {
    return this.lines.slice(from).filter((l) => /Linux version \d/.test(l.text)).length;
  }

  /** The power cut: SIGKILL, then wait for QEMU to be gone. */
  async kill() {
    if (!this.child) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }

  async close() {
    await this.kill();
    await new Promise((r) => this.log.end(r));
  }
}
