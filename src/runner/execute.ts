// Run a pipeline: plan, take the run lock, then walk the stages in order. For each stage the
// walk decides (decide.ts), carries the decision out (stage-runner.ts runs a stage) and records
// the outcome (run-record.ts); none of the three knows about the others.
import type { ResolvedPipeline } from '../config/load.js';
import type { Manifest } from '../cache/store.js';
import { acquireRunLock } from '../cache/run-lock.js';
import { ancestorsAndSelf } from '../graph/dag.js';
import type { KindRegistry } from '../stages/registry.js';
import type { RunSummary } from '../stages/types.js';
import { decide, type Decision, type Outcome } from './decide.js';
import { appendRun, headlineMetrics } from './history.js';
import { makePlan, outputsRoot, type Plan, type PlannedStage } from './plan.js';
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
  const planOpts = { outputs: opts.outputs ?? outputsRoot(), force: opts.force };
  const startedAt = new Date().toISOString();
  const t0 = Date.now();
  const first = await makePlan(pipeline, registry, planOpts);
  const release = await acquireRunLock(first.store.pipelineDir, (m) => opts.reporter.info(m));
  try {
    // Plan again under the lock: a run we waited for may have produced what we need.
    const plan = await makePlan(pipeline, registry, planOpts);
    const record = await execute(plan, opts, startedAt);
    await appendRun(plan.store.pipelineDir, {
      started_at: startedAt,
      seconds: (Date.now() - t0) / 1000,
      seed: pipeline.seed,
      settings: Object.fromEntries(pipeline.stages.map((s) => [s.name, s.settings])),
      stages: record.summary.stages,
      metrics: headlineMetrics(record.results()),
    });
    await publish(plan, record.summary);
    return record.summary;
  } finally {
    await release();
  }
}

/** Walks the plan in order: decide, carry out, record. Throws Aborted after an interrupt. */
async function execute(plan: Plan, opts: RunOptions, startedAt: string): Promise<RunRecord> {
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
  if (runner.interrupted) throw new Aborted();
  return record;
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
