// Running a pipeline: every pipeline runs as a sweep, one plan per variant, each keeping its own
// tfpipe.lock and report.html under outputs/<pipeline>/variants/<variant>/, joined into one graph by
// the runner. A pipeline without a sweep is a sweep of one unnamed variant that records to
// outputs/<pipeline>/ as always: run, status, dag and --dry-run all take this one path.
import { join } from 'node:path';
import { outputsRoot } from '../cache/outputs.js';
import { ArtefactStore } from '../cache/store.js';
import type { ResolvedPipeline } from '../config/load.js';
import { InProcessExecutor } from '../executors/in-process.js';
import type { RunSummary } from '../ground/run-summary.js';
import { runUnits, type RunOptions, type RunUnit, type UnionRun } from '../runner/execute.js';
import { makePlan } from '../runner/plan.js';
import type { InitBackend } from '../runner/stage-runner.js';
import type { StageInstance } from '../runner/union.js';
import type { StageExecutor } from '../runner/walk.js';
import type { KindRegistry } from '../stage-kind/registry.js';
import { formatValue, sweepOfOne, type SweepDefinition, type Variant } from './variants.js';

const VARIANTS_DIR = 'variants';

export function isSweep(def: SweepDefinition): boolean {
  return def.axes.length > 0;
}

export function pipelineDirOf(def: SweepDefinition, outputs: string): string {
  return new ArtefactStore(outputs, def.name).pipelineDir;
}

/** Where a variant's tfpipe.lock and report.html live; the pipeline folder if there is no sweep. */
export function variantDir(def: SweepDefinition, outputs: string, v: Variant): string {
  const dir = pipelineDirOf(def, outputs);
  return isSweep(def) ? join(dir, VARIANTS_DIR, v.name) : dir;
}

/** One plan per variant; `run` (for a run, not status) remembers input hashes and tags the runs. */
export async function planVariants(
  def: SweepDefinition,
  registry: KindRegistry,
  opts: { outputs: string; force?: readonly string[]; run?: { sweepId: string } },
  variants: readonly Variant[] = def.selected,
): Promise<RunUnit[]> {
  const units: RunUnit[] = [];
  // One after another: they share the input-hash memo, so the data archive is hashed once.
  for (const v of variants) {
    const dir = variantDir(def, opts.outputs, v);
    const plan = await makePlan(v.pipeline, registry, {
      outputs: opts.outputs,
      force: opts.force,
      lockDir: dir,
      rememberHashes: opts.run !== undefined,
    });
    const sweep =
      isSweep(def) && opts.run
        ? { id: opts.run.sweepId, variant: v.name, index: v.index, values: v.values, of: def.variants.length }
        : undefined;
    units.push({ plan, publishDir: dir, ...(sweep ? { sweep } : {}) });
  }
  return units;
}

/** Which variants use an instance: the swept values they agree on, and how many when more than one. */
function instanceUse(
  def: SweepDefinition,
  variants: readonly Variant[],
  users: readonly number[],
): { values: string; count?: string } {
  if (!isSweep(def)) return { values: '' };
  const vs = users.map((i) => variants[i]);
  if (vs.length === variants.length && vs.length > 1) return { values: '', count: `all ${vs.length} variants` };
  const common = def.axes.filter((a) =>
    vs.every((v) => formatValue(v.values[a.short]) === formatValue(vs[0].values[a.short])),
  );
  const values = common.map((a) => `${a.short}=${formatValue(vs[0].values[a.short])}`).join(',');
  return vs.length > 1 ? { values, count: `${vs.length} variants` } : { values };
}

/** How an instance is shown in status, dag and --dry-run: "depth=4, 3 variants", "all 4 variants". */
export function instanceLabel(def: SweepDefinition, variants: readonly Variant[], users: readonly number[]): string {
  const { values, count } = instanceUse(def, variants, users);
  return [values, count].filter(Boolean).join(', ');
}

/** A progress row's title: "train lr=0.002,depth=4", "model depth=4 (3 variants)", "data (all 4 variants)". */
function instanceTitle(def: SweepDefinition, variants: readonly Variant[], inst: StageInstance): string {
  const { values, count } = instanceUse(def, variants, inst.users);
  return [inst.planned.stage.name, values, count && `(${count})`].filter(Boolean).join(' ');
}

export interface SweepRun extends UnionRun {
  variants: readonly Variant[];
}

export interface PipelineRunOptions extends Omit<RunOptions, 'executor' | 'rowTitle'> {
  /** How instances run; by default one after another in this process. */
  executor?: StageExecutor;
  /** Initialises the TensorFlow.js backend for the default executor; injected so the core never imports tfjs. */
  initBackend?: InitBackend;
}

export async function runSweep(
  def: SweepDefinition,
  registry: KindRegistry,
  opts: PipelineRunOptions & { outputs: string },
): Promise<SweepRun> {
  const sweepId = new Date().toISOString();
  const { initBackend, ...rest } = opts;
  const run = await runUnits(
    pipelineDirOf(def, opts.outputs),
    () => planVariants(def, registry, { outputs: opts.outputs, force: opts.force, run: { sweepId } }),
    {
      ...rest,
      executor: opts.executor ?? new InProcessExecutor(initBackend, opts.signal),
      rowTitle: (inst) => instanceTitle(def, def.selected, inst),
    },
  );
  return { ...run, variants: def.selected };
}

/** A pipeline without a sweep, run as the sweep of one it is; its run's summary. */
export async function runPipeline(
  pipeline: ResolvedPipeline,
  registry: KindRegistry,
  opts: PipelineRunOptions,
): Promise<RunSummary> {
  const run = await runSweep(sweepOfOne(pipeline), registry, {
    ...opts,
    outputs: opts.outputs ?? outputsRoot(pipeline),
  });
  return run.summaries[0];
}
