import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * Guards of the source structure (docs/architecture.md): imports inside and between the packages
 * point one way (no cycle, type-only imports included: a cycle of types is still a knot a reader
 * has to untie), and the agent's public entry carries no test machinery.
 */
const repo = fileURLToPath(new URL('../..', import.meta.url));
const SOURCE_ROOTS = ['packages', 'simulators'].flatMap((base) =>
  readdirSync(join(repo, base))
    .map((name) => join(repo, base, name, 'src'))
    .filter((dir) => existsSync(dir)),
);

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(path);
    return /\.tsx?$/.test(e.name) && !e.name.endsWith('.d.ts') ? [path] : [];
  });
}

interface ModuleImport {
  specifier: string;
  /** Names it re-exports (`export { a, b } from`), `*` for `export *`; empty for a plain import. */
  reexports: string[];
}

/** Every static import/export-from and every `import('…')` with a string literal. */
function importsOf(file: string): ModuleImport[] {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const found: ModuleImport[] = [];
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier))
      found.push({ specifier: node.moduleSpecifier.text, reexports: [] });
    else if (
      ts.isExportDeclaration(node) &&
      node.moduleSpecifier &&
      ts.isStringLiteral(node.moduleSpecifier)
    ) {
      const clause = node.exportClause;
      const names =
        clause && ts.isNamedExports(clause)
          ? clause.elements.map((e) => e.name.text)
          : [clause && ts.isNamespaceExport(clause) ? clause.name.text : '*'];
      found.push({ specifier: node.moduleSpecifier.text, reexports: names });
    } else if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments[0] &&
      ts.isStringLiteral(node.arguments[0])
    )
      found.push({ specifier: node.arguments[0].text, reexports: [] });
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** The workspace entries, as the packages' `exports` and vitest.config.ts name them. */
const WORKSPACE_ENTRIES: Record<string, string> = {
  '@flotilla/protocol': 'packages/protocol/src/index.ts',
  '@flotilla/delta': 'packages/delta/src/index.ts',
  '@flotilla/image': 'packages/image/src/index.ts',
  '@flotilla/server': 'packages/server/src/index.ts',
  '@flotilla/agent': 'packages/agent/src/index.ts',
  '@flotilla/agent/testing': 'packages/agent/src/testing.ts',
  '@flotilla/cli': 'packages/cli/src/index.ts',
  '@flotilla/fleet-simulator': 'simulators/fleet/src/index.ts',
};

/** The source file an import names, or null for a third-party or node: module. */
function resolveImport(from: string, specifier: string): string | null {
  if (specifier.startsWith('@flotilla/')) {
    const entry = WORKSPACE_ENTRIES[specifier];
    if (!entry) throw new Error(`${relative(repo, from)}: unknown workspace import ${specifier}`);
    return join(repo, entry);
  }
  if (!specifier.startsWith('.')) return null;
  const base = resolve(dirname(from), specifier).replace(/\.js$/, '');
  for (const candidate of [`${base}.ts`, `${base}.tsx`, join(base, 'index.ts')])
    if (existsSync(candidate)) return candidate;
  // a relative import of a non-TypeScript file (JSON, a vendored script): not part of the graph
  return null;
}

const files = SOURCE_ROOTS.flatMap(sourceFiles);
const graph = new Map(
  files.map((f) => [
    f,
    importsOf(f)
      .map((i) => resolveImport(f, i.specifier))
      .filter((t): t is string => t !== null),
  ]),
);

/** Strongly connected components of more than one file (or a file importing itself): Tarjan. */
function cycles(edges: Map<string, string[]>): string[][] {
  let index = 0;
  const order = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const connect = (v: string) => {
    order.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v) ?? []) {
      if (!order.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, order.get(w)!));
    }
    if (low.get(v) === order.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || (edges.get(v) ?? []).includes(v)) found.push(component);
    }
  };
  for (const v of edges.keys()) if (!order.has(v)) connect(v);
  return found;
}

/** One concrete loop through a component, `a → b → … → a`, for the failure message. */
function describeCycle(component: string[], edges: Map<string, string[]>): string {
  const inside = new Set(component);
  const start = component[0]!;
  // breadth-first from start back to start, staying inside the component
  const previous = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const v = queue.shift()!;
    for (const w of edges.get(v) ?? []) {
      if (!inside.has(w)) continue;
      if (w === start) {
        const path = [start];
        for (let u: string | undefined = v; u && u !== start; u = previous.get(u)) path.unshift(u);
        path.unshift(start);
        return path.map((p) => relative(repo, p)).join(' → ');
      }
      if (!previous.has(w)) {
        previous.set(w, v);
        queue.push(w);
      }
    }
  }
  return component.map((p) => relative(repo, p)).join(', ');
}

const packageOf = (file: string) => relative(repo, file).split('/').slice(0, 2).join('/');

describe('source structure', () => {
  it('reads the imports of every package source file', () => {
    // a parse that finds nothing would make the cycle checks below pass vacuously
    expect(files.length).toBeGreaterThan(200);
    expect([...graph.values()].flat().length).toBeGreaterThan(files.length);
  });

  it('has no import cycle between source files (relative and @flotilla/* imports)', () => {
    expect(cycles(graph).map((c) => describeCycle(c, graph))).toEqual([]);
  });

  it('has no import cycle between packages', () => {
    const packages = new Map<string, string[]>();
    for (const [from, targets] of graph) {
      const deps = packages.get(packageOf(from)) ?? [];
      for (const t of targets) if (packageOf(t) !== packageOf(from)) deps.push(packageOf(t));
      packages.set(packageOf(from), [...new Set(deps)]);
    }
    expect(cycles(packages).map((c) => c.join(' ↔ '))).toEqual([]);
    // and each imports only what docs/architecture.md's package table says it may
    const allowed: Record<string, string[]> = {
      'packages/protocol': [],
      'packages/delta': [],
      'packages/image': ['packages/protocol'],
      'packages/server': ['packages/protocol', 'packages/delta', 'packages/image'],
      'packages/agent': ['packages/protocol', 'packages/delta', 'packages/image'],
      'packages/cli': ['packages/protocol', 'packages/delta', 'packages/image', 'packages/server'],
      'simulators/fleet': ['packages/protocol', 'packages/image', 'packages/agent', 'packages/server'],
    };
    const outside = [...packages].flatMap(([pkg, deps]) =>
      deps.filter((d) => !(allowed[pkg] ?? []).includes(d)).map((d) => `${pkg} → ${d}`),
    );
    expect(outside).toEqual([]);
  });

  it("finds a cycle when there is one (the check's own check)", () => {
    const knot = new Map([
      ['/a.ts', ['/b.ts']],
      ['/b.ts', ['/c.ts']],
      ['/c.ts', ['/a.ts']],
      ['/d.ts', ['/a.ts']],
    ]);
    expect(cycles(knot).map((c) => c.sort())).toEqual([['/a.ts', '/b.ts', '/c.ts']]);
  });

  it("keeps test machinery out of the agent's public entry (sim/, Memory*, emulate*, PowerCut, simulateBoot)", () => {
    const entry = join(repo, 'packages/agent/src/index.ts');
    const exported = new Map<string, string>();
    // follow `export … from` chains so that a re-export through another module is seen too
    const collect = (file: string, seen: Set<string>) => {
      if (seen.has(file)) return;
      seen.add(file);
      for (const i of importsOf(file)) {
        if (i.reexports.length === 0) continue;
        const target = resolveImport(file, i.specifier);
        for (const name of i.reexports)
          if (name !== '*') exported.set(name, relative(repo, target ?? i.specifier));
        if (target && i.reexports.includes('*')) collect(target, seen);
      }
    };
    collect(entry, new Set());
    expect(exported.size).toBeGreaterThan(20);
    const machinery = [...exported].filter(
      ([name, from]) =>
        /\/sim\//.test(from) ||
        /^(Memory|emulate)/.test(name) ||
        name === 'PowerCut' ||
        name === 'simulateBoot',
    );
    expect(machinery).toEqual([]);
    // and the test entry does carry them, so the names above are the ones in use
    const testing = readFileSync(join(repo, 'packages/agent/src/testing.ts'), 'utf8');
    expect(testing).toMatch(/PowerCut[\s\S]*from '\.\/sim\//);
  });
});
