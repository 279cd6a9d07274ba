// File → validated, resolved pipeline. Nothing runs and nothing is written unless this succeeds.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, relative, resolve } from 'node:path';
import type { JsonObject, RuntimeSettings } from '../stages/types.js';
import type { KindRegistry } from '../stages/registry.js';
import { topoOrder, type GraphNode } from '../graph/dag.js';
import { isUrl, localPathSettings } from './path-settings.js';
import { overrideValue, parseOverride, setAtPath, type Override } from './overrides.js';
import { ConfigError, dottedPath, type Problem } from './problems.js';
import { locate, parseYaml } from './source.js';
import { createValidator } from './validate.js';

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
}

export function loadPipeline(file: string, registry: KindRegistry, sets: readonly string[] = []): ResolvedPipeline {
  const shown = relative(process.cwd(), resolve(file)) || file;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([{ where: shown, path: '', message: `cannot read pipeline file: ${(err as Error).message}` }]);
  }
  const { source, problems } = parseYaml(shown, text);
  if (problems.length) throw new ConfigError(problems);
  const data = source.data;
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new ConfigError([{ where: `${shown}:1:1`, path: '', message: 'a pipeline file must be a mapping with name and stages' }]);
  }
  const root = data as Record<string, unknown>;
  const stagesRaw = root.stages && typeof root.stages === 'object' ? (root.stages as Record<string, unknown>) : {};
  const validator = createValidator(registry);

  // Overrides first, so they are validated exactly like file values.
  const overrides: Override[] = [];
  const all: Problem[] = [];
  for (const s of sets) {
    const o = parseOverride(s, Object.keys(stagesRaw));
    if ('where' in o) { all.push(o); continue; }
    const schema = validator.schemaAt(root, o.path);
    let value = overrideValue(o.raw, schema?.type);
    // A path typed on the command line is relative to where it was typed; store it relative to
    // the pipeline file like paths written in the file.
    if (schema?.['x-path'] === true && typeof value === 'string' && !isUrl(value) && !isAbsolute(value)) {
      value = relative(dirname(resolve(file)), resolve(value));
    }
    setAtPath(root, o.path, value);
    overrides.push(o);
  }

  const where = (path: (string | number)[], keyOnly = false): string => {
    // The last --set of a key is the one that took effect, so it is the one to blame.
    const hit = [...overrides].reverse().find((o) => startsWith(path, o.path));
    return hit ? `--set ${hit.text}` : locate(source, path, { key: keyOnly });
  };
  const invalid = validator.validate(root);
  for (const p of invalid) all.push({ where: where(p.path, p.keyOnly), path: dottedPath(p.path), message: p.message });

  // A local file named by a setting must exist; checked here so it is reported with its position.
  for (const [name, st] of Object.entries(stagesRaw)) {
    const kind = registry.get(String((st as { kind?: unknown })?.kind));
    if (!kind || invalid.some((p) => p.path[0] === 'stages' && p.path[1] === name)) continue;
    for (const p of localPathSettings(kind.schema, st as JsonObject)) {
      const abs = resolve(dirname(resolve(file)), p.value);
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
    graph.push({ name, needs: Array.isArray(needs) ? needs.filter((n): n is string => typeof n === 'string' && n !== name) : [] });
    if (!Array.isArray(needs)) continue;
    needs.forEach((n, i) => {
      if (typeof n !== 'string') return;
      if (!names.includes(n)) {
        all.push({ where: where(['stages', name, 'needs', i]), path: `stages.${name}.needs[${i}]`, message: `no stage named "${n}" (stages: ${names.join(', ')})` });
      } else if (n === name) {
        all.push({ where: where(['stages', name, 'needs', i]), path: `stages.${name}.needs[${i}]`, message: 'a stage cannot need itself' });
      }
    });
    const kind = registry.get(String((st as { kind?: unknown }).kind));
    const lacking = (kind?.requires ?? []).filter((req) => !needs.some((n) => typeof n === 'string' && (stagesRaw[n] as { kind?: unknown } | undefined)?.kind === req));
    if (kind && lacking.length) {
      const what = lacking.length === 1 ? `${withArticle(lacking[0])} stage` : `stages of kind ${lacking.slice(0, -1).join(', ')} and ${lacking[lacking.length - 1]}`;
      all.push({ where: where(['stages', name, 'needs']), path: `stages.${name}.needs`, message: `${withArticle(kind.kind)} stage needs ${what} among its needs` });
    }
  }
  const cycle = topoOrder(graph);
  if ('cycle' in cycle) {
    const first = cycle.cycle[0];
    all.push({ where: where(['stages', first, 'needs']), path: `stages.${first}.needs`, message: `dependency cycle: ${cycle.cycle.join(' -> ')}` });
  }
  if (all.length) throw new ConfigError(all);

  const stages: ResolvedStage[] = names.map((name) => {
    const { kind, needs, ...settings } = stagesRaw[name] as JsonObject & { kind: string; needs?: string[] };
    return { name, kind, needs: needs ?? [], settings };
  });
  const sorted = topoOrder(stages);
  if ('cycle' in sorted) throw new Error('unreachable: cycles are reported above');
  const abs = resolve(file);
  return {
    name: root.name as string,
    description: root.description as string | undefined,
    seed: root.seed as number,
    runtime: root.runtime as RuntimeSettings,
    file: abs,
    dir: dirname(abs),
    stages: sorted.order,
  };
}

/** "an evaluate stage", "a train stage". */
function withArticle(word: string): string {
  return `${/^[aeiou]/i.test(word) ? 'an' : 'a'} ${word}`;
}

function startsWith(path: readonly (string | number)[], prefix: readonly (string | number)[]): boolean {
  return prefix.length <= path.length && prefix.every((p, i) => String(p) === String(path[i]));
}
