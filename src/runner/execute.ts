// Run plans: take the run lock, plan, join the plans into one graph of stage instances and walk it
// (walk.ts decides, an executor runs, each plan's RunRecord records), then history and published
// reports. A plain pipeline is one plan; a sweep is one plan per variant, sharing the instances
// they agree on.
import type { ResolvedPipeline } from '../config/load.js';
import { ensureWritable, outputsRoot } from '../cache/outputs.js';
import { acquireRunLock } from '../cache/run-lock.js';
import { ArtefactStore } from '../cache/store.js';
import { ancestorsAndSelf } from '../graph/dag.js';
import type { KindRegistry } from '../stage-kind/registry.js';
import type { RunSummary } from '../ground/run-summary.js';
import type { Outcome } from './decide.js';
import { outcomeOf, RunEntry, type SweepTag } from './history.js';
import { InProcessExecutor } from '../executors/in-process.js';
import { makePlan, type Plan } from './plan.js';
import { RunRecord } from './run-record.js';
import type { InitBackend } from './stage-runner.js';
import { Aborted } from '../ground/errors.js';
import type { StepReporter } from './steps.js';
import { unionOf, type StageInstance } from './union.js';
import { walk, type StageExecutor } from './walk.js';

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
  /** A sweep variant's tag on its runs.jsonl record. */
  sweep?: SweepTag;
}

export interface UnionRun {
  units: RunUnit[];
  instances: StageInstance[];
  outcomes: Map<string, Outcome>;
  /** One per unit, in the same order. */
  summaries: RunSummary[];
}

export async function runPipeline(
  pipeline: ResolvedPipeline,
  registry: KindRegistry,
  opts: RunOptions,
): Promise<RunSummary> {
  const outputs = opts.outputs ?? outputsRoot(pipeline);
  const plan = async (): Promise<RunUnit[]> => {
    const p = await makePlan(pipeline, registry, { outputs, force: opts.force, rememberHashes: true });
    return [{ plan: p, publishDir: p.store.pipelineDir }];
  };
  const run = await runUnits(new ArtefactStore(outputs, pipeline.name).pipelineDir, plan, opts);
  return run.summaries[0];
}

/**
 * Takes the run lock of `pipelineDir`, then plans (under the lock: a run we waited for may have
 * produced what we need), runs the union and records each unit's run.
 */
export async function runUnits(
  pipelineDir: string,
  plan: () => Promise<RunUnit[]>,
  opts: RunOptions & { rowTitle?: (inst: StageInstance) => string },
): Promise<UnionRun> {
  const startedAt = new Date().toISOString();
  await ensureWritable(pipelineDir);
  let release: Awaited<ReturnType<typeof acquireRunLock>>;
  try {
    release = await acquireRunLock(pipelineDir, { onWait: (m) => opts.reporter.info(m), signal: opts.signal });
  } catch (err) {
    // An executor handed in (a queue connection, stage processes) is let go on this path too, or
    // its sockets would keep the process alive after an interrupted wait.
    await opts.executor?.close();
    if (opts.signal?.aborted) throw new Aborted('interrupted while waiting for the run lock; nothing ran');
    throw err;
  }
  const executor = opts.executor ?? new InProcessExecutor(opts.initBackend, opts.signal);
  try {
    const units = await plan();
    // One after another, so runs.jsonl lists a sweep's variants in their order.
    const entries: RunEntry[] = [];
    for (const u of units) {
      const { pipeline } = u.plan;
      entries.push(
        await RunEntry.start(pipelineDir, {
          started_at: startedAt,
          seed: pipeline.seed,
          settings: Object.fromEntries(pipeline.stages.map((s) => [s.name, s.settings])),
          ...(u.sweep ? { sweep: u.sweep } : {}),
        }),
      );
    }
    const records = units.map((u) => new RunRecord(u.plan, startedAt));
    try {
      const selected = units.map((u) =>
        opts.until ? ancestorsAndSelf(u.plan.pipeline.stages, opts.until) : undefined,
      );
      const instances = unionOf(
        units.map((u) => u.plan),
        (i) => selected[i],
      );
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
      const interrupted = opts.signal?.aborted ?? false;
      for (const [i, r] of records.entries()) {
        r.backend = executor.backendName ?? r.backendOfResults();
        await r.save();
        if (!interrupted) await publish(units[i], r.summary);
        await entries[i].finish({
          ...outcomeOf(r.summary.stages, interrupted),
          stages: r.summary.stages,
          metrics: r.headline(),
        });
      }
      if (interrupted) throw new Aborted('interrupted; finished stages are kept, the interrupted one will run again');
      return { units, instances, outcomes, summaries: records.map((r) => r.summary) };
    } catch (err) {
      if (!(err instanceof Aborted)) {
        for (const [i, e] of entries.entries()) {
          await e.finish({
            outcome: 'failed',
            stages: records[i].summary.stages,
            metrics: {},
            stopped_at: [],
            error: (err as Error).message,
          });
        }
      }
      throw err;
    }
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
