// What `status`, `dag`, `run --dry-run` and `run` print. Every pipeline is a sweep here (one without
// a sweep: is a sweep of one unnamed variant): its variants are planned and joined into one graph of
// stage instances, the graph a run walks. A plain pipeline is shown as it always was, stage by stage
// with its keys; a sweep shows its instances, the variants using each and how many stage runs
// sharing saves.
import { relative } from 'node:path';
import { type DagFormat, renderGraph } from '../graph/dag.js';
import type { StageState } from '../runner/plan.js';
import type { PlannedStage } from '../runner/plan.js';
import type { StageInstance } from '../runner/union.js';
import { unionOf } from '../runner/union.js';
import type { KindRegistry } from '../stage-kind/registry.js';
import { instanceLabel, isSweep, pipelineDirOf, planVariants, variantDir, type SweepRun } from '../sweep/run.js';
import type { SweepDefinition } from '../sweep/variants.js';
import { estimateField, estimateLines } from '../kinds/train-estimate.js';

const out = (s: string) => process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
const shown = (p: string) => relative(process.cwd(), p) || '.';

/** A cached stage below one that runs is reused only if that one reproduces its outputs. */
export function dryRunState(s: PlannedStage): 'cached' | 'would run' | 'cached if upstream unchanged' {
  if (s.forced || s.state !== 'cached') return 'would run';
  return s.pendingUpstream.length ? 'cached if upstream unchanged' : 'cached';
}

function sweepDoc(def: SweepDefinition) {
  return {
    axes: def.axes.map((a) => ({ setting: a.setting, short: a.short, values: a.values.map((v) => v.value) })),
    /** Variants in the whole sweep; `variants` lists the selected ones. */
    total: def.variants.length,
    variants: def.selected.map((v) => ({ index: v.index, name: v.name, values: v.values })),
  };
}

/**
 * The selected variants planned and joined. Problems that did not stop planning (a damaged lock
 * entry) go to stderr for the views that show states.
 */
async function stageGraph(
  def: SweepDefinition,
  registry: KindRegistry,
  outputs: string,
  opts: { force?: readonly string[]; until?: string; warn: boolean },
) {
  const units = await planVariants(def, registry, { outputs, force: opts.force ?? [] });
  const warnings = units.flatMap((u) => u.plan.warnings);
  if (opts.warn) for (const w of warnings) process.stderr.write(`tfpipe: warning: ${w}\n`);
  return {
    ...unionOf(
      units.map((u) => u.plan),
      opts.until,
    ),
    warnings,
  };
}

function variantNames(def: SweepDefinition, inst: StageInstance): string[] {
  return inst.users.map((i) => def.selected[i].name);
}

function sweepHeader(def: SweepDefinition, dir: string): string[] {
  const lines = [
    `pipeline ${def.name} (${shown(dir)}): sweep of ${def.variants.length} variants over ${def.axes.map((a) => a.setting).join(' × ')}` +
      (def.selected.length < def.variants.length ? `, ${def.selected.length} selected` : ''),
  ];
  for (const v of def.selected) lines.push(`  [${v.index}] ${v.name}`);
  return lines;
}

export async function commandStatus(
  def: SweepDefinition,
  registry: KindRegistry,
  outputs: string,
  json: boolean,
): Promise<number> {
  const sweep = isSweep(def);
  const { instances, withoutSharing, warnings } = await stageGraph(def, registry, outputs, { warn: true });
  const stages = await Promise.all(
    instances.map(async (i) => ({
      ...(sweep ? { id: i.id } : {}),
      name: i.planned.stage.name,
      kind: i.planned.stage.kind,
      state: i.planned.state as StageState,
      key: i.planned.key,
      reasons: i.planned.reasons,
      ...(sweep ? { needs: Object.values(i.needs), variants: variantNames(def, i) } : {}),
      ...(await estimateField(i.plan, i.planned)),
    })),
  );
  if (json) {
    const doc = sweep
      ? {
          pipeline: def.name,
          sweep: sweepDoc(def),
          stages,
          stage_runs: { instances: instances.length, without_sharing: withoutSharing },
        }
      : { pipeline: def.name, stages };
    out(JSON.stringify({ ...doc, ...(warnings.length ? { warnings } : {}) }, null, 2));
    return 0;
  }
  const dir = pipelineDirOf(def, outputs);
  for (const l of sweep ? sweepHeader(def, dir) : [`pipeline ${def.name} (${shown(dir)})`]) out(l);
  const w = Math.max(...instances.map((i) => i.id.length));
  const k = Math.max(...stages.map((s) => s.kind.length));
  for (const [n, s] of stages.entries()) {
    const inst = instances[n];
    // A plain pipeline's stages are named by their keys; a sweep's instances by the variants using them.
    const last = sweep ? instanceLabel(def, def.selected, inst.users) : s.key;
    out(`  ${inst.id.padEnd(w)}  ${s.kind.padEnd(k)}  ${s.state.padEnd(7)}  ${last}`);
    for (const r of s.reasons) out(`  ${' '.repeat(w)}    - ${r}`);
    for (const l of estimateLines(s)) out(`  ${' '.repeat(w)}    ~ ${l}`);
  }
  if (sweep)
    out(`${instances.length} stage instances for ${def.selected.length} variants (${withoutSharing} without sharing)`);
  return 0;
}

export async function commandDag(
  def: SweepDefinition,
  registry: KindRegistry,
  outputs: string,
  format: DagFormat,
): Promise<number> {
  const { instances } = await stageGraph(def, registry, outputs, { warn: false });
  const nodes = instances.map((i) => ({
    name: i.id,
    kind: i.planned.stage.kind,
    needs: Object.values(i.needs),
    note: instanceLabel(def, def.selected, i.users),
  }));
  out(renderGraph(nodes, format));
  return 0;
}

export async function commandDryRun(
  def: SweepDefinition,
  registry: KindRegistry,
  outputs: string,
  opts: { force: string[]; until?: string; json: boolean },
): Promise<number> {
  const sweep = isSweep(def);
  const { instances, withoutSharing } = await stageGraph(def, registry, outputs, { ...opts, warn: true });
  const stages = await Promise.all(
    instances.map(async (i) => ({
      ...(sweep ? { id: i.id } : {}),
      name: i.planned.stage.name,
      kind: i.planned.stage.kind,
      state: dryRunState(i.planned),
      key: i.planned.key,
      reasons: i.planned.forced ? ['forced with --force'] : i.planned.reasons,
      ...(sweep ? { variants: variantNames(def, i) } : {}),
      ...(await estimateField(i.plan, i.planned)),
    })),
  );
  const toRun = stages.filter((s) => s.state !== 'cached').length;
  if (opts.json) {
    const runs = { instances: instances.length, would_run: toRun, without_sharing: withoutSharing };
    out(
      JSON.stringify(
        sweep
          ? { pipeline: def.name, dry_run: true, sweep: sweepDoc(def), stages, stage_runs: runs }
          : { pipeline: def.name, dry_run: true, stages },
        null,
        2,
      ),
    );
    return 0;
  }
  for (const [n, s] of stages.entries()) {
    const label = sweep ? ` [${instanceLabel(def, def.selected, instances[n].users)}]` : '';
    out(`${instances[n].id}${label}: ${s.state}${s.reasons.length ? ` (${s.reasons.join('; ')})` : ''}`);
    for (const l of estimateLines(s)) out(`  ~ ${l}`);
  }
  if (!sweep) return 0;
  const of =
    def.selected.length < def.variants.length
      ? `${def.selected.length} of ${def.variants.length}`
      : `${def.variants.length}`;
  out(
    `sweep of ${of} variants: ${instances.length} stage runs with sharing (${toRun} not cached now), ` +
      `against ${withoutSharing} without sharing (${def.selected.length} variants × ${withoutSharing / def.selected.length} stages)`,
  );
  return 0;
}

const round = (x: number) => Math.round(x * 1000) / 1000;

/** The --json document of a finished run of a plain pipeline. */
export function pipelineRunDoc(run: SweepRun) {
  const summary = run.summaries[0];
  return {
    pipeline: summary.pipeline,
    backend: summary.backend,
    stages: summary.stages.map((s) => ({
      name: s.name,
      state: s.state,
      key: s.key,
      seconds: round(s.seconds),
      dir: relative(process.cwd(), s.dir),
      ...(s.error ? { error: s.error } : {}),
    })),
  };
}

/** What a finished run of a plain pipeline says on the terminal. */
export function describePipelineRun(doc: ReturnType<typeof pipelineRunDoc>): string[] {
  const ran = doc.stages.filter((s) => s.state === 'ran').length;
  const cached = doc.stages.filter((s) => s.state === 'cached').length;
  const bad = doc.stages.filter((s) => s.state === 'failed' || s.state === 'skipped');
  return [
    `${doc.pipeline}: ${ran} ran, ${cached} cached${bad.length ? `, ${bad.length} failed or skipped` : ''}${doc.backend ? ` (backend ${doc.backend})` : ''}`,
    ...doc.stages.filter((x) => x.error).map((s) => `  ${s.name}: ${s.error}`),
  ];
}

/** The --json document of a finished sweep run. */
export function sweepRunDoc(def: SweepDefinition, run: SweepRun, outputs: string, page: string | undefined) {
  const byId = new Map(run.instances.map((i) => [i.id, i]));
  const instances = [...run.outcomes].map(([id, o]) => {
    const inst = byId.get(id)!;
    return {
      id,
      name: inst.planned.stage.name,
      key: inst.planned.key,
      state: o.state,
      seconds: round(o.seconds),
      variants: variantNames(def, inst),
      ...('error' in o ? { error: o.error } : {}),
    };
  });
  const count = (state: string) => instances.filter((i) => i.state === state).length;
  return {
    pipeline: def.name,
    sweep: sweepDoc(def),
    variants: run.variants.map((v, i) => ({
      index: v.index,
      name: v.name,
      values: v.values,
      dir: shown(variantDir(def, outputs, v)),
      ...(run.summaries[i].backend ? { backend: run.summaries[i].backend } : {}),
      stages: run.summaries[i].stages.map((s) => ({
        name: s.name,
        state: s.state,
        key: s.key,
        seconds: round(s.seconds),
        dir: shown(s.dir),
        ...(s.error ? { error: s.error } : {}),
      })),
    })),
    instances,
    stage_runs: {
      ran: count('ran'),
      cached: count('cached'),
      failed: count('failed'),
      skipped: count('skipped'),
      without_sharing: run.summaries.reduce((n, s) => n + s.stages.length, 0),
    },
    ...(page ? { sweep_html: shown(page) } : {}),
  };
}

export function describeSweepRun(doc: ReturnType<typeof sweepRunDoc>): string[] {
  const r = doc.stage_runs;
  const of =
    doc.variants.length < doc.sweep.total ? `${doc.variants.length} of ${doc.sweep.total}` : `${doc.sweep.total}`;
  const lines = [
    `${doc.pipeline}: sweep of ${of} variants: ${r.ran} stage runs ran, ${r.cached} cached` +
      `${r.failed + r.skipped ? `, ${r.failed} failed, ${r.skipped} skipped` : ''} (${doc.instances.length} stage instances against ${r.without_sharing} without sharing)`,
  ];
  for (const v of doc.variants) {
    const bad = v.stages.filter((s) => s.state === 'failed' || s.state === 'skipped');
    lines.push(
      `  [${v.index}] ${v.name}: ${bad.length ? bad.map((s) => `${s.name} ${s.state}${s.error ? `: ${s.error}` : ''}`).join('; ') : 'done'} (${v.dir})`,
    );
  }
  if (doc.sweep_html) lines.push(`sweep page: ${doc.sweep_html}`);
  return lines;
}
