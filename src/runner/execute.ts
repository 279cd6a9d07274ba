// Run a pipeline: take the run lock, plan, then walk the stages in order. For each stage the
// walk decides (decide.ts), carries the decision out (stage-runner.ts runs a stage) and records
// the outcome (run-record.ts); none of the three knows about the others.
import type { ResolvedPipeline } from '../config/load.js';
import { ensureWritable, outputsRoot } from '../cache/outputs.js';
import { acquireRunLock } from '../cache/run-lock.js';
import { ArtefactStore, type Manifest } from '../cache/store.js';
import { ancestorsAndSelf } from '../graph/dag.js';
import type { KindRegistry } from '../stages/registry.js';
import type { RunSummary } from '../stages/types.js';
import { decide, type Decision, type Outcome } from './decide.js';
import { headlineMetrics, outcomeOf, RunEntry } from './history.js';
import { makePlan, type Plan, type PlannedStage } from './plan.js';
import { RunRecord } from './run-record.js';
import { Aborted, StageRunner, type InitBackend } from './stage-runner.js';
import type { RunView, StepReporter } from './steps.js';

export { Aborted } from './stage-runner.js';

export interface RunOptions {
  force?: string[];
  until?: string;
  reporter: StepReporter;
  signal?: AbortSignal;
  outputs?: string;
  /** Initialises the TensorFlow.js backend; injected so the core never imports tfjs itself. */
  initBackend?: InitBackend;
}

export async function runPipeline(pipeline: ResolvedPipeline, registry: KindRegistry, opts: RunOptions): Promise<RunSummary> {
  const outputs = opts.outputs ?? outputsRoot(pipeline);
  const startedAt = new Date().toISOString();
  const pipelineDir = await ensureWritable(new ArtefactStore(outputs, pipeline.name).pipelineDir);
  let release;
  try {
    release = await acquireRunLock(pipelineDir, { onWait: (m) => opts.reporter.info(m), signal: opts.signal });
  } catch (err) {
    if (opts.signal?.aborted) throw new Aborted('interrupted while waiting for the run lock; nothing ran');
    throw err;
  }
  try {
    const entry = await RunEntry.start(pipelineDir, {
      started_at: startedAt, seed: pipeline.seed, settings: Object.fromEntries(pipeline.stages.map((s) => [s.name, s.settings])),
    });
    let record: RunRecord | undefined;
    let interrupted = false;
    try {
      // Planned under the lock: a run we waited for may have produced what we need.
      const plan = await makePlan(pipeline, registry, { outputs, force: opts.force, rememberHashes: true });
      ({ record, interrupted } = await execute(plan, opts, startedAt));
      if (!interrupted) await publish(plan, record.summary);
    } catch (err) {
      await entry.finish({ outcome: 'failed', stages: record?.summary.stages ?? [], metrics: {}, stopped_at: [], error: (err as Error).message });
      throw err;
    }
    await entry.finish({ ...outcomeOf(record.summary.stages, interrupted), stages: record.summary.stages, metrics: headlineMetrics(record.results()) });
    if (interrupted) throw new Aborted('interrupted; finished stages are kept, the interrupted one will run again');
    return record.summary;
  } finally {
    await release();
  }
}

/** Walks the plan in order: decide, carry out, record. */
async function execute(plan: Plan, opts: RunOptions, startedAt: string): Promise<{ record: RunRecord; interrupted: boolean }> {
  const selected = opts.until ? ancestorsAndSelf(plan.pipeline.stages, opts.until) : undefined;
  const visit = plan.stages.filter((p) => !selected || selected.has(p.stage.name));
  const record = new RunRecord(plan, startedAt);
  const runner = new StageRunner(plan, opts.initBackend, opts.signal);
  const view = opts.reporter.begin(visit.map((p) => ({ name: p.stage.name, kind: p.stage.kind })));
  for (const p of visit) {
    const decision = decide(p, record.outcomes, runner.interrupted);
    await record.add(p, await carryOut(p, decision, record.outcomes, runner, view));
  }
  await view.end();
  if (runner.backendName) record.summary.backend = runner.backendName;
  await record.save();
  return { record, interrupted: runner.interrupted };
}

async function carryOut(p: PlannedStage, d: Decision, outcomes: ReadonlyMap<string, Outcome>, runner: StageRunner, view: RunView): Promise<Outcome> {
  const name = p.stage.name;
  switch (d.action) {
    case 'skip':
      view.skipped(name, d.reason);
      return { state: 'skipped', error: d.reason, seconds: 0 };
    case 'reuse':
      view.cached(name, `key ${p.key}`);
      return { state: 'cached', manifest: d.manifest, seconds: 0 };
    case 'run': {
      // decide() only runs a stage whose needs all finished.
      const needs = Object.fromEntries(p.stage.needs.map((n) => [n, (outcomes.get(n) as { manifest: Manifest }).manifest]));
      const t = Date.now();
      try {
        const manifest = await view.running(name, d.reasons, (io) => runner.run(p, needs, io));
        return { state: 'ran', manifest, seconds: manifest.seconds };
      } catch (err) {
        return { state: 'failed', error: (err as Error).message, seconds: (Date.now() - t) / 1000 };
      }
    }
  }
}

/** Kinds with a publish hook (the report) refresh their pipeline-level files after every run. */
async function publish(plan: Plan, summary: RunSummary): Promise<void> {
  for (const p of plan.stages) {
    const done = summary.stages.find((x) => x.name === p.stage.name);
    if (p.impl.publish && done && (done.state === 'ran' || done.state === 'cached')) {
      await p.impl.publish(done.dir, plan.store.pipelineDir, summary);
    }
  }
}
