// File → validated, resolved pipeline. Nothing runs and nothing is written unless this succeeds.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, relative, resolve } from 'node:path';
import type { RuntimeSettings } from '../stage-kind/types.js';
import type { JsonObject } from '../ground/json.js';
import type { KindRegistry } from '../stage-kind/registry.js';
import { topoOrder, type GraphNode } from '../graph/dag.js';
import { isObject } from '../ground/json.js';
import { isUrl, localPathSettings } from './path-settings.js';
import { overrideValue, parseOverride, setAtPath } from './overrides.js';
import { dottedPath } from './problems.js';
import { ConfigError, type Problem } from '../ground/errors.js';
import { locate, parseYaml } from './source.js';
import { createValidator, type Validator } from './validate.js';

export interface ResolvedStage {
  name: string;
  kind: string;
  needs: string[];
  /** Settings with defaults applied, without `kind` and `needs`. */
  settings: JsonObject;
}

export interface ResolvedPipeline {
  name: string;
  description?: string;
  seed: number;
  runtime: RuntimeSettings;
  /** Absolute path of the pipeline file, and its folder (local inputs are relative to it). */
  file: string;
  dir: string;
  /** In run order. */
  stages: ResolvedStage[];
  /**
   * The document as written, with overrides applied and before defaults: what a worker
   * re-resolves with its own schemas and kind versions to check that it computes the same keys.
   */
  document: JsonObject;
}

/** A value set from outside the file's stage settings: `--set`, or one value of a sweep. */
export interface Assignment {
  /** Full path from the document root, e.g. ["stages","train","lr"]. */
  path: (string | number)[];
  /** Already typed (see overrideValue). */
  value: unknown;
  /** Where a problem with this value is reported: "--set train.lr=abc", or "p.yaml:12:7". */
  where: string;
}

/** A parsed pipeline file, not yet validated; resolve it with any number of assignment sets. */
export interface PipelineSource {
  /** Absolute path. */
  file: string;
  /** As shown in messages (relative to the cwd). */
  shown: string;
  root: Record<string, unknown>;
  /** file:line:col of the node at a document path. */
  locate(path: readonly (string | number)[], keyOnly?: boolean): string;
}

export function readPipelineSource(file: string): PipelineSource {
  const shown = relative(process.cwd(), resolve(file)) || file;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([
      { where: shown, path: '', message: `cannot read pipeline file: ${(err as Error).message}` },
    ]);
  }
  const { source, problems } = parseYaml(shown, text);
  if (problems.length) throw new ConfigError(problems);
  const data = source.data;
  if (!isObject(data)) {
    throw new ConfigError([
      { where: `${shown}:1:1`, path: '', message: 'a pipeline file must be a mapping with name and stages' },
    ]);
  }
  return {
    file: resolve(file),
    shown,
    root: data,
    locate: (path, keyOnly = false) => locate(source, path, { key: keyOnly }),
  };
}

/** A pipeline document that did not come from a file on this machine (a worker's job). */
export function documentSource(document: JsonObject, file: string, where: string): PipelineSource {
  return { file, shown: file, root: document as Record<string, unknown>, locate: () => where };
}

export function stageNames(root: Record<string, unknown>): string[] {
  return root.stages && typeof root.stages === 'object' ? Object.keys(root.stages as object) : [];
}

// Compiling the composed schema is the slow part of validation; a sweep validates many variants.
const validators = new WeakMap<KindRegistry, Validator>();
function validatorFor(registry: KindRegistry): Validator {
  let v = validators.get(registry);
  if (!v) {
    v = createValidator(registry);
    validators.set(registry, v);
  }
  return v;
}

/**
 * The value `raw` (as typed on the command line) gets at `path`: typed by the schema there, and
 * a local path made relative to the pipeline file, like paths written in the file.
 */
export function typedValue(
  src: PipelineSource,
  registry: KindRegistry,
  path: readonly (string | number)[],
  raw: string,
): unknown {
  const schema = validatorFor(registry).schemaAt(src.root, path);
  const value = overrideValue(raw, schema?.type);
  if (schema?.['x-path'] === true && typeof value === 'string' && !isUrl(value) && !isAbsolute(value)) {
    return relative(dirname(src.file), resolve(value));
  }
  return value;
}

/** `--set KEY=VALUE` texts as typed assignments, or the problems with them. */
export function parseSets(
  src: PipelineSource,
  registry: KindRegistry,
  sets: readonly string[],
): { assignments: Assignment[]; problems: Problem[] } {
  const assignments: Assignment[] = [];
  const problems: Problem[] = [];
  for (const s of sets) {
    const o = parseOverride(s, stageNames(src.root));
    if ('where' in o) problems.push(o);
    else assignments.push({ path: o.path, value: typedValue(src, registry, o.path, o.raw), where: `--set ${o.text}` });
  }
  return { assignments, problems };
}

export function loadPipeline(file: string, registry: KindRegistry, sets: readonly string[] = []): ResolvedPipeline {
  const src = readPipelineSource(file);
  const { assignments, problems } = parseSets(src, registry, sets);
  return withProblems(problems, () => resolvePipeline(src, registry, assignments));
}

/** `resolve()`'s result, unless it or the problems found before it have something to say: all at once. */
function withProblems<T>(found: readonly Problem[], resolve: () => T): T {
  let value: T;
  try {
    value = resolve();
  } catch (err) {
    if (err instanceof ConfigError && found.length) throw new ConfigError([...found, ...err.problems]);
    throw err;
  }
  if (found.length) throw new ConfigError([...found]);
  return value;
}

/**
 * Validate the source with the assignments applied (to a copy: one source serves every variant of
 * a sweep) and resolve it. Problems at an assigned value are reported where it was assigned.
 */
export function resolvePipeline(
  src: PipelineSource,
  registry: KindRegistry,
  assignments: readonly Assignment[],
): ResolvedPipeline {
  const { sweep: _sweep, ...rest } = structuredClone(src.root);
  const root: Record<string, unknown> = rest;
  for (const a of assignments) setAtPath(root, a.path, structuredClone(a.value));
  const document = structuredClone(root) as JsonObject;
  const stagesRaw = root.stages && typeof root.stages === 'object' ? (root.stages as Record<string, unknown>) : {};
  const validator = validatorFor(registry);

  const all: Problem[] = [];
  const where = (path: (string | number)[], keyOnly = false): string => {
    // The last assignment to a path is the one in effect.
    const hit = [...assignments].reverse().find((a) => startsWith(path, a.path));
    return hit ? hit.where : src.locate(path, keyOnly);
  };
  // The sweep block's shape is checked here, its values by the variants that use them.
  if (_sweep !== undefined) root.sweep = _sweep;
  const invalid = validator.validate(root);
  for (const p of invalid) all.push({ where: where(p.path, p.keyOnly), path: dottedPath(p.path), message: p.message });
  delete root.sweep;

  // A local file named by a setting must exist; checked here so it is reported with its position.
  for (const [name, st] of Object.entries(stagesRaw)) {
    const kind = registry.get(String((st as { kind?: unknown })?.kind));
    if (!kind || invalid.some((p) => p.path[0] === 'stages' && p.path[1] === name)) continue;
    for (const p of localPathSettings(kind.schema, st as JsonObject)) {
      const abs = resolve(dirname(src.file), p.value);
      if (!existsSync(abs)) {
        const path = ['stages', name, ...p.path];
        all.push({ where: where(path), path: dottedPath(path), message: `no such file or folder: ${abs}` });
      }
    }
  }

  // Graph checks need well-formed needs lists; schema errors there are already reported.
  const names = Object.keys(stagesRaw);
  const graph: GraphNode[] = [];
  for (const [name, st] of Object.entries(stagesRaw)) {
    const needs = (st as { needs?: unknown })?.needs;
    graph.push({
      name,
      needs: Array.isArray(needs) ? needs.filter((n): n is string => typeof n === 'string' && n !== name) : [],
    });
    if (!Array.isArray(needs)) continue;
    needs.forEach((n, i) => {
      if (typeof n !== 'string') return;
      if (!names.includes(n)) {
        all.push({
          where: where(['stages', name, 'needs', i]),
          path: `stages.${name}.needs[${i}]`,
          message: `no stage named "${n}" (stages: ${names.join(', ')})`,
        });
      } else if (n === name) {
        all.push({
          where: where(['stages', name, 'needs', i]),
          path: `stages.${name}.needs[${i}]`,
          message: 'a stage cannot need itself',
        });
      }
    });
    const kind = registry.get(String((st as { kind?: unknown }).kind));
    const lacking = (kind?.requires ?? []).filter(
      (req) =>
        !needs.some((n) => typeof n === 'string' && (stagesRaw[n] as { kind?: unknown } | undefined)?.kind === req),
    );
    if (kind && lacking.length) {
      const what =
        lacking.length === 1
          ? `${withArticle(lacking[0])} stage`
          : `stages of kind ${lacking.slice(0, -1).join(', ')} and ${lacking[lacking.length - 1]}`;
      all.push({
        where: where(['stages', name, 'needs']),
        path: `stages.${name}.needs`,
        message: `${withArticle(kind.kind)} stage needs ${what} among its needs`,
      });
    }
  }
  const sorted = topoOrder(graph);
  if ('cycle' in sorted) {
    const first = sorted.cycle[0];
    all.push({
      where: where(['stages', first, 'needs']),
      path: `stages.${first}.needs`,
      message: `dependency cycle: ${sorted.cycle.join(' -> ')}`,
    });
  }
  if (all.length || 'cycle' in sorted) throw new ConfigError(all);

  // Valid now, so the graph above has exactly the stages' needs: its order is the run order.
  const stages: ResolvedStage[] = sorted.order.map(({ name }) => {
    const { kind, needs, ...settings } = stagesRaw[name] as JsonObject & { kind: string; needs?: string[] };
    return { name, kind, needs: needs ?? [], settings };
  });
  return {
    name: root.name as string,
    description: root.description as string | undefined,
    seed: root.seed as number,
    runtime: root.runtime as RuntimeSettings,
    file: src.file,
    dir: dirname(src.file),
    stages,
    document,
  };
}

/** "an evaluate stage", "a train stage". */
function withArticle(word: string): string {
  return `${/^[aeiou]/i.test(word) ? 'an' : 'a'} ${word}`;
}

function startsWith(path: readonly (string | number)[], prefix: readonly (string | number)[]): boolean {
  return prefix.length <= path.length && prefix.every((p, i) => String(p) === String(path[i]));
}
