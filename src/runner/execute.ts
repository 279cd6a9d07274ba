// Runs plans: under the pipeline's run lock, plan, join the plans into one graph of stage instances
// and walk it (walk.ts decides, the executor runs, each plan's RunRecord records), then record the
// run (tfpipe.lock, runs.jsonl) and publish its reports. A sweep is one plan per variant, sharing
// the instances they agree on; a plain pipeline is a sweep of one (sweep/run.ts).
import { ensureWritable } from '../cache/outputs.js';
import { acquireRunLock } from '../cache/run-lock.js';
import { Aborted } from '../ground/errors.js';
import type { RunSummary } from '../ground/run-summary.js';
import type { Outcome } from './decide.js';
import { outcomeOf, RunEntry, type SweepTag } from './history.js';
import type { Plan } from './plan.js';
import { RunRecord } from './run-record.js';
import type { StepReporter } from './steps.js';
import { unionOf, type StageInstance } from './union.js';
import { walk, type StageExecutor } from './walk.js';

export interface RunOptions {
  force?: string[];
  until?: string;
  reporter: StepReporter;
  signal?: AbortSignal;
  outputs?: string;
  /** Stage instances run at once (-j); 1 unless given. */
  jobs?: number;
  /** How instances run: in this process, in child processes, through a queue (executors/). */
  executor: StageExecutor;
  /** How a progress row shows an instance, if not by its id. */
  rowTitle?: (inst: StageInstance) => string;
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

/**
 * Takes the run lock of `pipelineDir`, then plans (under the lock: a run we waited for may have
 * produced what we need), runs the union and records each unit's run. The executor is closed at
 * the end, whatever happens.
 */
export async function runUnits(
  pipelineDir: string,
  plan: () => Promise<RunUnit[]>,
  opts: RunOptions,
): Promise<UnionRun> {
  const startedAt = new Date().toISOString();
  const release = await takeRunLock(pipelineDir, opts);
  try {
    const units = await plan();
    const entries = await startEntries(pipelineDir, units, startedAt);
    const records = units.map((u) => new RunRecord(u.plan, startedAt));
    try {
      const { instances, outcomes } = await walkUnits(units, records, opts);
      const interrupted = opts.signal?.aborted ?? false;
      await finishRecords(units, records, entries, opts.executor, interrupted);
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
    await opts.executor.close();
    await release();
  }
}

/** The pipeline's run lock, once its folder is known to be writable; waits for another run. */
async function takeRunLock(pipelineDir: string, opts: RunOptions): Promise<() => Promise<void>> {
  await ensureWritable(pipelineDir);
  try {
    return await acquireRunLock(pipelineDir, { onWait: (m) => opts.reporter.info(m), signal: opts.signal });
  } catch (err) {
    // The executor handed in (a queue connection, stage processes) is let go on this path too, or
    // its sockets would keep the process alive after an interrupted wait.
    await opts.executor.close();
    if (opts.signal?.aborted) throw new Aborted('interrupted while waiting for the run lock; nothing ran');
    throw err;
  }
}

/** A "started" line in runs.jsonl per unit, one after another so a sweep's variants keep their order. */
async function startEntries(pipelineDir: string, units: readonly RunUnit[], startedAt: string): Promise<RunEntry[]> {
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
  return entries;
}

/** Walks the union of the units' plans, each outcome recorded in the records of the plans that use it. */
async function walkUnits(units: readonly RunUnit[], records: readonly RunRecord[], opts: RunOptions) {
  const { instances } = unionOf(
    units.map((u) => u.plan),
    opts.until,
  );
  const jobs = opts.jobs ?? 1;
  const view = opts.reporter.begin(
    instances.map((inst) => ({ name: inst.id, kind: inst.planned.stage.kind, title: opts.rowTitle?.(inst) })),
    { concurrent: jobs > 1 },
  );
  const outcomes = await walk(instances, {
    jobs,
    executor: opts.executor,
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
  return { instances, outcomes };
}

/** Saves each unit's tfpipe.lock, publishes its reports (unless interrupted) and ends its runs.jsonl record. */
async function finishRecords(
  units: readonly RunUnit[],
  records: readonly RunRecord[],
  entries: readonly RunEntry[],
  executor: StageExecutor,
  interrupted: boolean,
): Promise<void> {
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
