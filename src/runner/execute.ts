// Run plans: take the run lock, join the plans into one graph of stage instances, walk it (walk.ts
// decides, an executor runs, each plan's RunRecord records), then history and published reports.
// A plain pipeline is one plan; a sweep is one plan per variant, sharing the instances they agree on.
import type { ResolvedPipeline } from '../config/load.js';
import { acquireRunLock } from '../cache/run-lock.js';
import { ancestorsAndSelf } from '../graph/dag.js';
import type { KindRegistry } from '../stages/registry.js';
import type { RunSummary } from '../stages/types.js';
import type { Outcome } from './decide.js';
import { appendRun, headlineMetrics, type RunRecord as RunHistoryRecord } from './history.js';
import { InProcessExecutor } from './in-process.js';
import { makePlan, outputsRoot, type Plan } from './plan.js';
import { RunRecord } from './run-record.js';
import { Aborted, type InitBackend } from './stage-runner.js';
import type { StepReporter } from './steps.js';
import { unionOf, type StageInstance } from './union.js';
import { walk, type StageExecutor } from './walk.js';

export { Aborted } from './stage-runner.js';

export interface RunOptions {
  force?: string[];
  until?: string;
  reporter: StepReporter;
  signal?: AbortSignal;
  outputs?: string;
  /** Initialises the TensorFlow.js backend; injected so the core never imports tfjs itself. */
  initBackend?: InitBackend;
  /** Stage instances run at once (-j); 1 unless given. */
  jobs?: number;
  /** How instances run; by default one after another in this process. */
  executor?: StageExecutor;
}

/** One plan to run and where its run is recorded. */
export interface RunUnit {
  plan: Plan;
  /** Where kinds with a publish hook (the report) write this run's page: the pipeline or variant folder. */
  publishDir: string;
  /** Extra fields of this run's runs.jsonl line (a sweep variant's tag). */
  history?: Pick<RunHistoryRecord, 'sweep'>;
}

export interface UnionRun {
  units: RunUnit[];
  instances: StageInstance[];
  outcomes: Map<string, Outcome>;
  /** One per unit, in the same order. */
  summaries: RunSummary[];
}

export async function runPipeline(pipeline: ResolvedPipeline, registry: KindRegistry, opts: RunOptions): Promise<RunSummary> {
  const planOpts = { outputs: opts.outputs ?? outputsRoot(), force: opts.force };
  const plan = async (): Promise<RunUnit[]> => {
    const p = await makePlan(pipeline, registry, planOpts);
    return [{ plan: p, publishDir: p.store.pipelineDir }];
  };
  const run = await runUnits(plan, opts);
  return run.summaries[0];
}

/**
 * Plans (through `plan`, once before and once under the run lock: a run we waited for may have
 * produced what we need), runs the union and records each unit's run.
 */
export async function runUnits(plan: () => Promise<RunUnit[]>, opts: RunOptions & { rowTitle?: (inst: StageInstance) => string }): Promise<UnionRun> {
  const startedAt = new Date().toISOString();
  const t0 = Date.now();
  const first = await plan();
  const release = await acquireRunLock(first[0].plan.store.pipelineDir, (m) => opts.reporter.info(m));
  const executor = opts.executor ?? new InProcessExecutor(opts.initBackend, opts.signal);
  try {
    const units = await plan();
    const selected = units.map((u) => (opts.until ? ancestorsAndSelf(u.plan.pipeline.stages, opts.until) : undefined));
    const instances = unionOf(units.map((u) => u.plan), (i) => selected[i]);
    const records = units.map((u) => new RunRecord(u.plan, startedAt));
    const jobs = opts.jobs ?? 1;
    const view = opts.reporter.begin(
      instances.map((inst) => ({ name: inst.id, kind: inst.planned.stage.kind, title: opts.rowTitle?.(inst) })),
      { concurrent: jobs > 1 },
    );
    const outcomes = await walk(instances, {
      jobs,
      executor,
      view,
      signal: opts.signal,
      onOutcome: async (inst, o) => {
        for (const i of inst.users) {
          const p = units[i].plan.stages.find((s) => s.stage.name === inst.planned.stage.name);
          if (p) await records[i].add(p, o);
        }
      },
    });
    await view.end();
    for (const r of records) {
      r.backend = executor.backendName ?? r.backendOfResults();
      await r.save();
    }
    if (opts.signal?.aborted) throw new Aborted();
    const seconds = (Date.now() - t0) / 1000;
    for (const [i, u] of units.entries()) {
      const { pipeline } = u.plan;
      await appendRun(u.plan.store.pipelineDir, {
        started_at: startedAt,
        seconds,
        seed: pipeline.seed,
        settings: Object.fromEntries(pipeline.stages.map((s) => [s.name, s.settings])),
        stages: records[i].summary.stages,
        metrics: headlineMetrics(records[i].results()),
        ...u.history,
      });
      await publish(u, records[i].summary);
    }
    return { units, instances, outcomes, summaries: records.map((r) => r.summary) };
  } finally {
    await executor.close();
    await release();
  }
}

/** Kinds with a publish hook (the report) refresh their pipeline-level files after every run. */
async function publish(unit: RunUnit, summary: RunSummary): Promise<void> {
  for (const p of unit.plan.stages) {
    const done = summary.stages.find((x) => x.name === p.stage.name);
    if (p.impl.publish && done && (done.state === 'ran' || done.state === 'cached')) {
      await p.impl.publish(done.dir, unit.publishDir, summary);
    }
  }
}
