// A sweep's variants: the Cartesian product of its axes, each one a fully resolved pipeline, with
// short names (`lr=0.002,depth=4`) that also name its folder under outputs/<pipeline>/variants/.
import { canonicalJson, sha256 } from '../cache/hash.js';
import {
  documentSource,
  readPipelineSource,
  resolvePipeline,
  typedValue,
  type Assignment,
  type PipelineSource,
  type ResolvedPipeline,
} from '../config/load.js';
import { splitValues } from '../config/overrides.js';
import { ConfigError, type Problem } from '../ground/errors.js';
import { sweepAxes, type SweepAxis } from './axes.js';
import type { KindRegistry } from '../stage-kind/registry.js';
import type { JsonValue } from '../ground/json.js';

export interface Axis extends SweepAxis {
  /** The shortest tail of the setting path that no other axis ends with: "lr", "depth". */
  short: string;
}

export interface Variant {
  /** Position in the product, from 0 (Hydra's job number); `--variant 3` picks it. */
  index: number;
  /** "lr=0.002,depth=4"; "" for a pipeline without a sweep. */
  name: string;
  /** Short setting name -> value, in axis order. */
  values: Record<string, JsonValue>;
  pipeline: ResolvedPipeline;
}

export interface SweepDefinition {
  source: PipelineSource;
  /** The pipeline's name (every variant has it). */
  name: string;
  axes: Axis[];
  /** Every variant, in product order (the last axis varies fastest, as in Hydra). */
  variants: Variant[];
  /** The ones `run` and `status` act on: all, or those chosen with --variant. */
  selected: Variant[];
}

export interface SweepOptions {
  sets?: readonly string[];
  /** -m: a `--set KEY=a,b` sweeps over a and b. */
  multirun?: boolean;
  /** --variant texts: an index, or `short=value,...` (any subset of the axes). */
  pick?: readonly string[];
}

/** A pipeline without a sweep: one unnamed variant, itself. */
export function sweepOfOne(pipeline: ResolvedPipeline): SweepDefinition {
  const only: Variant = { index: 0, name: '', values: {}, pipeline };
  return {
    source: documentSource(pipeline.document, pipeline.file, pipeline.file),
    name: pipeline.name,
    axes: [],
    variants: [only],
    selected: [only],
  };
}

/** Folder names stay readable but portable; very long ones are shortened with a hash. */
const MAX_NAME = 100;

export function formatValue(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return canonicalJson(v);
}

export function shortNames(settings: readonly string[]): string[] {
  const parts = settings.map((s) => s.split('.'));
  return parts.map((p, i) => {
    for (let n = 1; n <= p.length; n++) {
      const tail = p.slice(-n).join('.');
      if (parts.every((q, j) => j === i || q.slice(-n).join('.') !== tail)) return tail;
    }
    return settings[i];
  });
}

function variantName(axes: readonly Axis[], combo: readonly unknown[]): string {
  if (!axes.length) return '';
  const name = axes
    .map((a, i) => `${a.short}=${formatValue(combo[i])}`)
    .join(',')
    .replace(/[^A-Za-z0-9._=,+-]/g, '_');
  return name.length <= MAX_NAME ? name : `${name.slice(0, MAX_NAME - 13)}~${sha256(name).slice(0, 12)}`;
}

function product<T>(lists: readonly (readonly T[])[]): T[][] {
  return lists.reduce<T[][]>((acc, list) => acc.flatMap((head) => list.map((x) => [...head, x])), [[]]);
}

export function loadSweep(file: string, registry: KindRegistry, opts: SweepOptions = {}): SweepDefinition {
  const source = readPipelineSource(file);
  const found = sweepAxes(source, registry, opts.sets ?? [], opts.multirun ?? false);
  const shorts = shortNames(found.axes.map((a) => a.setting));
  const axes: Axis[] = found.axes.map((a, i) => ({ ...a, short: shorts[i] }));

  const problems = new Map<string, Problem>(found.problems.map((p) => [`${p.where}|${p.path}|${p.message}`, p]));
  const variants: Variant[] = [];
  product(axes.map((a) => a.values)).forEach((combo, index) => {
    const assigned: Assignment[] = combo.map((v, i) => ({ path: axes[i].path, value: v.value, where: v.where }));
    try {
      const pipeline = resolvePipeline(source, registry, [...assigned, ...found.fixed]);
      const values = Object.fromEntries(axes.map((a, i) => [a.short, combo[i].value as JsonValue]));
      variants.push({
        index,
        name: variantName(
          axes,
          combo.map((c) => c.value),
        ),
        values,
        pipeline,
      });
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      // A bad value fails every variant that has it; say it once.
      for (const p of err.problems) problems.set(`${p.where}|${p.path}|${p.message}`, p);
    }
  });
  if (problems.size) throw new ConfigError([...problems.values()]);
  const names = new Set<string>();
  for (const v of variants) {
    if (names.has(v.name))
      throw new ConfigError([
        {
          where: source.shown,
          path: 'sweep',
          message: `two variants would share the folder name "${v.name}"; give the values distinct spellings`,
        },
      ]);
    names.add(v.name);
  }
  const selected = opts.pick?.length ? pick(source, registry, axes, variants, opts.pick) : variants;
  return { source, name: variants[0].pipeline.name, axes, variants, selected };
}

/** The variants that --variant names: by index, or by the values of some or all axes. */
function pick(
  src: PipelineSource,
  registry: KindRegistry,
  axes: readonly Axis[],
  variants: readonly Variant[],
  texts: readonly string[],
): Variant[] {
  const problems: Problem[] = [];
  const chosen = new Set<number>();
  const listing = () =>
    axes.map((a) => `${a.short} in {${a.values.map((v) => formatValue(v.value)).join(', ')}}`).join('; ');
  for (const text of texts) {
    const where = `--variant ${text}`;
    if (/^\d+$/.test(text.trim())) {
      const i = Number(text);
      if (i < variants.length) chosen.add(i);
      else
        problems.push({
          where,
          path: '',
          message: `there are ${variants.length} variants, numbered 0 to ${variants.length - 1}`,
        });
      continue;
    }
    if (!axes.length) {
      problems.push({ where, path: '', message: 'this pipeline has no sweep: block and no -m --set KEY=a,b' });
      continue;
    }
    const wanted: { axis: number; value: string }[] = [];
    const parts = splitValues(text);
    for (const part of parts) {
      const eq = part.indexOf('=');
      const name = part.slice(0, eq).trim();
      const matches = axes.flatMap((a, i) =>
        eq > 0 &&
        (a.setting === name || `stages.${a.setting}` === name || a.setting.endsWith(`.${name}`) || a.short === name)
          ? [i]
          : [],
      );
      if (matches.length !== 1) {
        problems.push({
          where,
          path: name,
          message: `${eq <= 0 ? 'expected NAME=VALUE' : matches.length ? 'names more than one swept setting' : 'is not a swept setting'}; the sweep has ${listing()}`,
        });
        continue;
      }
      const axis = axes[matches[0]];
      wanted.push({ axis: matches[0], value: canonicalJson(typedValue(src, registry, axis.path, part.slice(eq + 1))) });
    }
    if (wanted.length < parts.length) continue;
    const hits = variants.filter((v) => wanted.every((w) => canonicalJson(v.values[axes[w.axis].short]) === w.value));
    if (!hits.length)
      problems.push({ where, path: '', message: `no variant has these values; the sweep has ${listing()}` });
    for (const v of hits) chosen.add(v.index);
  }
  if (problems.length) throw new ConfigError(problems);
  return variants.filter((v) => chosen.has(v.index));
}
