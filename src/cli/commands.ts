// The CLI's commands that run or list runs; status, dag and --dry-run print through views.ts.
// With --json, stdout carries exactly one JSON document; everything else (progress, logs) goes to
// stderr.
import { flatten } from '../cache/keys.js';
import { outputsRoot } from '../cache/outputs.js';
import { ArtefactStore } from '../cache/store.js';
import type { ResolvedPipeline } from '../config/load.js';
import { buildPipelineSchema } from '../config/pipeline-schema.js';
import type { QueueUrl } from '../executors/redis.js';
import { formatDuration } from '../runner/format.js';
import { readRuns, type PastRun } from '../runner/history.js';
import { ListrReporter } from '../runner/listr-reporter.js';
import { PlainReporter } from '../runner/plain-reporter.js';
import type { StepReporter } from '../runner/steps.js';
import type { StageExecutor } from '../runner/walk.js';
import type { KindRegistry } from '../stage-kind/registry.js';
import { isSweep, runSweep } from '../sweep/run.js';
import type { SweepDefinition } from '../sweep/variants.js';
import { onInterrupt, UsageError } from './errors.js';
import { commandDryRun, describePipelineRun, describeSweepRun, pipelineRunDoc, sweepRunDoc } from './views.js';

const out = (s: string) => process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);

export function commandSchema(registry: KindRegistry): number {
  out(JSON.stringify(buildPipelineSchema(registry), null, 2));
  return 0;
}

function pickReporter(json: boolean): StepReporter {
  const tty = process.stderr.isTTY && (json || process.stdout.isTTY);
  if (tty && !process.env.NO_COLOR && !process.env.CI) return new ListrReporter();
  return new PlainReporter(json ? process.stderr : process.stdout);
}

export interface RunCommandOptions {
  force: string[];
  until?: string;
  dryRun: boolean;
  json: boolean;
  /** -j: stage instances at once, each in its own process when more than 1. */
  jobs: number;
  /** --queue redis://HOST:PORT: hand stage instances to `tfpipe worker`s through BullMQ. */
  queue?: string;
}

/** With a queue, every ready instance is queued at once; the workers' --concurrency limits the rest. */
const QUEUED_AT_ONCE = 10_000;

export async function commandRun(
  def: SweepDefinition,
  registry: KindRegistry,
  opts: RunCommandOptions,
): Promise<number> {
  const pipeline = def.selected[0].pipeline;
  const names = pipeline.stages.map((s) => s.name);
  for (const n of [...opts.force, ...(opts.until ? [opts.until] : [])]) {
    if (!names.includes(n)) {
      throw new UsageError(`no stage named "${n}" in ${pipeline.name} (stages: ${names.join(', ')})`);
    }
  }
  const outputs = outputsRoot(pipeline);
  if (opts.dryRun) return commandDryRun(def, registry, outputs, opts);
  // The queue is checked before anything is written: a wrong URL leaves no trace.
  let queue: QueueUrl | undefined;
  if (opts.queue) {
    const { checkRedis, parseQueueUrl } = await import('../executors/redis.js');
    queue = parseQueueUrl(opts.queue);
    await checkRedis(queue);
  }
  const reporter = pickReporter(opts.json);
  const interrupt = onInterrupt(
    '\ntfpipe: interrupting; a running stage stops after its current step (Ctrl-C again to quit now)\n',
  );
  try {
    let executor: StageExecutor | undefined;
    if (queue) {
      const [{ QueueExecutor }, { ensureStoreId }, { queueSecret }] = await Promise.all([
        import('../executors/queue.js'),
        import('../executors/store-id.js'),
        import('../executors/signing.js'),
      ]);
      const store = await ensureStoreId(outputs);
      executor = await QueueExecutor.connect(queue, {
        store,
        secret: await queueSecret(outputs, true),
        notify: (line) => reporter.info(line),
        signal: interrupt.signal,
      });
    } else if (opts.jobs > 1) {
      const { ProcessExecutor } = await import('../executors/child-processes.js');
      executor = new ProcessExecutor({ outputs, jobs: opts.jobs, signal: interrupt.signal });
    }
    const run = await runSweep(def, registry, {
      force: opts.force,
      until: opts.until,
      reporter,
      signal: interrupt.signal,
      outputs,
      jobs: queue ? QUEUED_AT_ONCE : opts.jobs,
      executor,
      initBackend: async (runtime) => {
        const { initBackend } = await import('../ml/backend.js');
        return initBackend(runtime.backend, runtime.threads);
      },
    });
    const failed = run.summaries.some((s) => s.stages.some((x) => x.state === 'failed'));
    if (isSweep(def)) {
      const { writeSweepPage } = await import('../sweep/results.js');
      const doc = sweepRunDoc(def, run, outputs, await writeSweepPage(def, registry, outputs));
      if (opts.json) out(JSON.stringify(doc, null, 2));
      else for (const l of describeSweepRun(doc)) reporter.info(l);
    } else {
      const doc = pipelineRunDoc(run);
      if (opts.json) out(JSON.stringify(doc, null, 2));
      else for (const l of describePipelineRun(doc)) reporter.info(l);
    }
    return failed ? 1 : 0;
  } finally {
    interrupt.release();
  }
}

/**
 * One row per past run: only the settings that differ from the run before (dvc exp show
 * --only-changed). A sweep's variants are compared with the sweep's first variant, and that one
 * with the run before the sweep, so each row shows what the sweep varied.
 */
export function describeRuns(runs: PastRun[]) {
  return runs.map((r, i) => {
    const groupStart = r.sweep ? runs.findIndex((x) => x.sweep?.id === r.sweep?.id) : i;
    const base = groupStart < i ? groupStart : i - 1;
    const prev = base >= 0 ? flatten(runs[base].settings) : {};
    const cur = flatten(r.settings);
    const changed: Record<string, { from: string | null; to: string | null }> = {};
    if (base >= 0) {
      for (const k of new Set([...Object.keys(prev), ...Object.keys(cur)])) {
        if (prev[k] !== cur[k]) changed[k] = { from: prev[k] ?? null, to: cur[k] ?? null };
      }
      if (runs[base].seed !== r.seed) changed.seed = { from: String(runs[base].seed), to: String(r.seed) };
    }
    return {
      run: i + 1,
      started_at: r.started_at,
      seconds: r.seconds,
      outcome: r.outcome,
      stopped_at: r.stopped_at,
      ...(r.error ? { error: r.error } : {}),
      ...(r.sweep ? { sweep: r.sweep } : {}),
      changed,
      ran: r.stages.filter((s) => s.state === 'ran').map((s) => s.name),
      best_val_accuracy: r.metrics.best_val_accuracy ?? null,
      test_accuracy: r.metrics.test_accuracy ?? null,
    };
  });
}

/** "ok", "failed at train", "interrupted at train", "killed", "running (pid 123)". */
function outcomeText(r: ReturnType<typeof describeRuns>[number], pid?: number): string {
  if (r.outcome === 'running') return `running${pid ? ` (pid ${pid})` : ''}`;
  if ((r.outcome === 'failed' || r.outcome === 'interrupted') && r.stopped_at.length)
    return `${r.outcome} at ${r.stopped_at.join(', ')}`;
  return r.outcome;
}

export async function commandRuns(pipeline: ResolvedPipeline, json: boolean): Promise<number> {
  const runs = await readRuns(new ArtefactStore(outputsRoot(pipeline), pipeline.name).pipelineDir);
  const rows = describeRuns(runs);
  const sweeps = [...new Set(rows.flatMap((r) => (r.sweep ? [r.sweep.id] : [])))].map((id) => {
    const members = rows.filter((r) => r.sweep?.id === id);
    return {
      id,
      started_at: members[0].started_at,
      variants: members[0].sweep?.of ?? members.length,
      runs: members.map((r) => r.run),
    };
  });
  if (json) {
    out(JSON.stringify({ pipeline: pipeline.name, runs: rows, sweeps }, null, 2));
    return 0;
  }
  if (!rows.length) {
    out(`no runs of ${pipeline.name} recorded yet`);
    return 0;
  }
  const pct = (x: number | null) => (x === null ? '-' : `${(x * 100).toFixed(2)}%`);
  const outcomes = rows.map((r, i) => outcomeText(r, runs[i].pid));
  const w = Math.max(7, ...outcomes.map((o) => o.length));
  const indent = 52 + w + 2;
  out(`run  started               time      val acc   test acc  ${'outcome'.padEnd(w)}  ran / changed`);
  let group: string | undefined;
  rows.forEach((r, i) => {
    if (r.sweep && r.sweep.id !== group) {
      const s = sweeps.find((x) => x.id === r.sweep?.id);
      out(
        `sweep of ${s?.variants} variants over ${Object.keys(r.sweep.values).join(' × ')} (runs ${s?.runs.join(', ')}):`,
      );
    }
    group = r.sweep?.id;
    const changes = Object.entries(r.changed).map(([k, v]) => `${k}: ${v.from ?? '∅'} → ${v.to ?? '∅'}`);
    const time = r.seconds === null ? '-' : formatDuration(r.seconds);
    const variant = r.sweep ? `  [${r.sweep.index}] ${r.sweep.variant}` : '';
    out(
      `${String(r.run).padEnd(4)} ${r.started_at.slice(0, 19).replace('T', ' ')}  ${time.padEnd(8)}  ${pct(r.best_val_accuracy).padEnd(8)}  ${pct(r.test_accuracy).padEnd(8)}  ${outcomes[i].padEnd(w)}  ran: ${r.ran.join(', ') || 'nothing'}${variant}`,
    );
    if (r.error) out(`${' '.repeat(indent)}${r.error}`);
    for (const c of changes) out(`${' '.repeat(indent)}${c}`);
  });
  return 0;
}
