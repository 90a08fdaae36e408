import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, extname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// Every pointer a reader may follow — a relative link in a *.md file, or a `something.md` / `docs/…`
// mention in a doc or a source file — must name a file of this repository (and a heading of it,
// for a #anchor into Markdown). A newcomer sent to a file that is not here is stuck.

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SKIP_DIRS = new Set(['node_modules', 'dist', '.git', 'vendor', 'out', 'test-output', 'coverage']);
const SOURCE_EXT = new Set(['.ts', '.js', '.mjs', '.cjs', '.json', '.yml', '.yaml', '.sh', '.html', '.css']);

function walk(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    if (SKIP_DIRS.has(name) || name.endsWith('.tsbuildinfo')) continue;
    const path = join(dir, name);
    const st = statSync(path);
    if (st.isDirectory()) walk(path, out);
    else if (st.size < 2_000_000) out.push(path);
  }
  return out;
}

/** GitHub's heading anchors: lower case, punctuation dropped, each space a hyphen, repeats numbered. */
function anchorsOf(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const anchors = new Set<string>();
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) fenced = !fenced;
    const heading = !fenced && /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!heading) continue;
    const base = heading[1]!
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n === 0 ? base : `${base}-${n}`);
  }
  return anchors;
}

interface Pointer {
  from: string;
  target: string;
}

/** The file a pointer names, or null: tried beside the file, from the repository root, in docs/. */
function resolveTarget(from: string, target: string): string | null {
  const [path] = target.split('#');
  const candidates = [resolve(dirname(from), path!), resolve(ROOT, path!), resolve(ROOT, 'docs', path!)];
  return candidates.find((c) => c.startsWith(ROOT) && existsSync(c)) ?? null;
}

function problem({ from, target }: Pointer): string | null {
  const file = resolveTarget(from, target);
  const where = relative(ROOT, from);
  if (file === null) return `${where}: ${target} does not exist`;
  const anchor = target.split('#')[1];
  if (anchor && extname(file) === '.md' && statSync(file).isFile()) {
    if (!anchorsOf(readFileSync(file, 'utf8')).has(anchor)) return `${where}: ${target} has no such heading`;
  }
  return null;
}

const MD_LINK = /\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g;
// A mention of a Markdown file (README.md, docs/agent.md#anchors) or of anything under docs/.
const MENTION = /(?<![\w/.-])((?:[\w.-]+\/)*[\w-]+\.md(?:#[\w-]+)?|docs\/[\w./-]*[\w-](?:#[\w-]+)?)/g;

function pointersIn(file: string): Pointer[] {
  const text = readFileSync(file, 'utf8');
  const found: Pointer[] = [];
  if (extname(file) === '.md') {
    const withoutCode = text.replace(/```[\s\S]*?```/g, '');
    for (const m of withoutCode.matchAll(MD_LINK)) {
      const target = m[1]!;
      if (/^[a-z][a-z+.-]*:/i.test(target)) continue; // http:, https:, mailto:
      found.push({
        from: file,
        target: target.startsWith('#') ? `${relative(dirname(file), file)}${target}` : target,
      });
    }
  }
  if (extname(file) === '.md' || SOURCE_EXT.has(extname(file))) {
    for (const m of text.matchAll(MENTION)) found.push({ from: file, target: m[1]! });
  }
  return found;
}

// Files that runs write (git-ignored outputs), named where they are written or described.
const GENERATED_PREFIXES = ['bench/out/', 'test-output/', 'firmware-images/out/'];
const GENERATED: Record<string, string[]> = { 'bench/delta/run.mjs': ['results.md'] };
const isGenerated = ({ from, target }: Pointer) =>
  GENERATED_PREFIXES.some((prefix) => target.startsWith(prefix)) ||
  (GENERATED[relative(ROOT, from)] ?? []).includes(target);

function brokenPointers(files: string[]): string[] {
  const out = new Set<string>();
  for (const f of files) {
    for (const p of pointersIn(f)) {
      if (isGenerated(p)) continue;
      const why = problem(p);
      if (why) out.add(why);
    }
  }
  return [...out].sort();
}

describe('links in docs and code', () => {
  it('every relative link and docs/ mention points at a file (and heading) of this repository', () => {
    const self = fileURLToPath(import.meta.url); // its fixtures below name missing files on purpose
    const files = walk(ROOT).filter(
      (f) => f !== self && (extname(f) === '.md' || SOURCE_EXT.has(extname(f))),
    );
    expect(files.length).toBeGreaterThan(100);
    expect(brokenPointers(files)).toEqual([]);
  });

  it('finds the broken ones: a missing file, a missing heading, a bare name that is not here', () => {
    const dir = join(ROOT, 'docs');
    const fake = join(dir, 'links-fixture.md');
    const pointers: Pointer[] = [
      { from: fake, target: 'agent.md' },
      { from: fake, target: 'no-such-file.md' },
      { from: fake, target: 'agent.md#no-such-heading' },
      { from: join(ROOT, 'packages/agent/src/index.ts'), target: 'docs/agent.md' },
      { from: join(ROOT, 'packages/agent/src/index.ts'), target: 'NOT-IN-THIS-REPO.md' },
    ];
    expect(pointers.map(problem)).toEqual([
      null,
      'docs/links-fixture.md: no-such-file.md does not exist',
      'docs/links-fixture.md: agent.md#no-such-heading has no such heading',
      null,
      'packages/agent/src/index.ts: NOT-IN-THIS-REPO.md does not exist',
    ]);
  });

  it('reads GitHub heading anchors the way GitHub makes them', () => {
    const md =
      '# Flotilla\n## 5. Demo firmware (`firmware-images/`)\n## Flow\n## Flow\n```\n# not a heading\n```\n';
    expect([...anchorsOf(md)]).toEqual(['flotilla', '5-demo-firmware-firmware-images', 'flow', 'flow-1']);
  });
});
