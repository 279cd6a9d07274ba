// The layering of the code, checked on every import (static, `import type`, `export … from` and
// dynamic import()), so that it stays as README.md's Layout describes it:
// - src/ is a stack of folders, lowest first (LAYERS). A module imports from its own folder or a
//   lower one, never a higher one; ground/ imports nothing of tfpipe at all. A new folder of src/
//   must be given its place here.
// - No two modules of src/ import each other, directly or through others (no cycles).
// - Outside src/: harness/ (what tests and benches share) imports src/; tests and benches import
//   src/ and harness/ (tests also the tools they test), never each other.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { test } from 'node:test';
import ts from 'typescript';
import { packageRoot } from '../src/ground/paths.js';

/** The folders of src/, lowest first. */
export const LAYERS = [
  'ground', // shared vocabulary: JSON types, errors, progress, run summaries, epoch metrics, package paths
  'cache', // keys, artefact store, lock file, run lock
  'graph', // DAG order, cycles, drawing
  'render', // pictures, charts, .npy, the report page
  'ml', // backend, ViT, augmentation, data, optimiser, rollout
  'stage-kind', // what a stage kind is, the registry, the kinds' docs
  'config', // pipeline file -> validated, resolved pipeline
  'runner', // plan, decide, walk, record
  'executors', // where stage instances run: in process, child processes, a queue
  'sweep', // pipelines as sweeps: variants, running them, their page
  'kinds', // the built-in stage kinds
  'cli', // the commands
] as const;

/** Top-level folders and what each may import besides itself. */
const OUTSIDE_SRC: Record<string, readonly string[]> = {
  harness: ['src'],
  test: ['src', 'harness', 'tools'],
  bench: ['src', 'harness'],
  tools: ['src'],
};

interface Import {
  from: string;
  to: string;
}

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return tsFiles(p);
    return p.endsWith('.ts') ? [p] : [];
  });
}

/** Every relative import of the .ts files under the given top-level folders, as paths from the package root. */
export function importsOf(folders: readonly string[], root = packageRoot): Import[] {
  const out: Import[] = [];
  for (const folder of folders) {
    for (const file of tsFiles(join(root, folder))) {
      const { importedFiles } = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
      for (const { fileName } of importedFiles) {
        if (!fileName.startsWith('.')) continue; // node: and npm packages
        const to = resolve(dirname(file), fileName).replace(/\.js$/, '.ts');
        out.push({ from: relative(root, file).split(sep).join('/'), to: relative(root, to).split(sep).join('/') });
      }
    }
  }
  return out;
}

/** The layer of a module of src/ ("src/cache/store.ts" -> "cache"), or undefined outside a known one. */
function layerOf(path: string): string | undefined {
  const [top, folder, ...rest] = path.split('/');
  if (top !== 'src' || rest.length === 0) return undefined;
  return (LAYERS as readonly string[]).includes(folder) ? folder : undefined;
}

/** Imports that go up the stack of src/ (or out of ground/ at all). */
export function upwardImports(imports: readonly Import[]): string[] {
  const rank = (path: string) => LAYERS.indexOf(layerOf(path) as (typeof LAYERS)[number]);
  return imports
    .filter((i) => i.from.startsWith('src/') && i.to.startsWith('src/'))
    .filter((i) => rank(i.to) > rank(i.from) || (layerOf(i.from) === 'ground' && layerOf(i.to) !== 'ground'))
    .map((i) => `${i.from} imports ${i.to}: ${layerOf(i.from)}/ may not import ${layerOf(i.to)}/`);
}

/** The cycles among the modules (strongly connected components of more than one module, or a self-import). */
export function importCycles(imports: readonly Import[]): string[][] {
  const next = new Map<string, string[]>();
  for (const { from, to } of imports) next.set(from, [...(next.get(from) ?? []), to]);
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  let counter = 0;
  const visit = (v: string) => {
    index.set(v, counter);
    low.set(v, counter);
    counter += 1;
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1 || next.get(v)?.includes(v)) cycles.push(component.sort());
  };
  for (const v of next.keys()) if (!index.has(v)) visit(v);
  return cycles;
}

test('every module of src/ is in a folder of the layer list (a new folder must be given its place)', () => {
  const stray = tsFiles(join(packageRoot, 'src'))
    .map((f) => relative(packageRoot, f).split(sep).join('/'))
    .filter((f) => layerOf(f) === undefined);
  assert.deepEqual(stray, [], `not in any of ${LAYERS.join(', ')}`);
});

test('src/ imports only downwards: each folder from itself and the folders below it; ground/ from nothing of tfpipe', () => {
  assert.deepEqual(upwardImports(importsOf(['src'])), [], `layers, lowest first: ${LAYERS.join(' < ')}`);
});

test('no module of src/ imports itself through others (no import cycles)', () => {
  assert.deepEqual(importCycles(importsOf(['src'])), []);
});

test('harness/, test/, bench/ and tools/ import src/ and harness/ (tests the tools too), never each other', () => {
  const bad = importsOf(Object.keys(OUTSIDE_SRC))
    .filter((i) => {
      const [from] = i.from.split('/');
      const [to] = i.to.split('/');
      return from !== to && !OUTSIDE_SRC[from].includes(to);
    })
    .map((i) => `${i.from} imports ${i.to}`);
  assert.deepEqual(bad, []);
  const out = importsOf(['src']).filter((i) => !i.to.startsWith('src/'));
  assert.deepEqual(
    out.map((i) => `${i.from} imports ${i.to}`),
    [],
    'src/ imports nothing outside src/',
  );
});

test('the checks catch what they are for: an upward import, an import out of ground/, a cycle', () => {
  const imports: Import[] = [
    { from: 'src/cache/store.ts', to: 'src/stage-kind/types.ts' },
    { from: 'src/ground/json.ts', to: 'src/cache/hash.ts' },
    { from: 'src/runner/a.ts', to: 'src/runner/b.ts' },
    { from: 'src/runner/b.ts', to: 'src/runner/c.ts' },
    { from: 'src/runner/c.ts', to: 'src/runner/a.ts' },
    { from: 'src/cli/main.ts', to: 'src/runner/a.ts' },
  ];
  assert.deepEqual(upwardImports(imports), [
    'src/cache/store.ts imports src/stage-kind/types.ts: cache/ may not import stage-kind/',
    'src/ground/json.ts imports src/cache/hash.ts: ground/ may not import cache/',
  ]);
  assert.deepEqual(importCycles(imports), [['src/runner/a.ts', 'src/runner/b.ts', 'src/runner/c.ts']]);
});
