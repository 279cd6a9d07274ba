// Walks a graph of stage instances: an instance starts once everything it needs has finished, up
// to `jobs` at a time. For each one the walk decides (decide.ts), hands a run to the executor (in
// this process, a child process, a queue worker) and reports the outcome; it never runs a stage.
import type { Manifest } from '../cache/store.js';
import { decide, type Outcome } from './decide.js';
import type { StageResult } from './stage-runner.js';
import type { RunView, StepIO } from './steps.js';
import type { StageInstance } from './union.js';

export interface StageExecutor {
  /** Runs an instance whose needs all finished, on their results. */
  run(inst: StageInstance, needs: Record<string, Manifest>, io: StepIO): Promise<StageResult>;
  /** The TensorFlow.js backend a stage ran on in this process, if one did. */
  readonly backendName?: string;
  /** Let go of processes and connections. */
  close(): Promise<void>;
}

export interface WalkOptions {
  jobs: number;
  executor: StageExecutor;
  view: RunView;
  signal?: AbortSignal;
  /** Called once per instance, in the order outcomes arrive, each call awaited before the next. */
  onOutcome(inst: StageInstance, outcome: Outcome): Promise<void>;
}

export async function walk(instances: readonly StageInstance[], opts: WalkOptions): Promise<Map<string, Outcome>> {
  const outcomes = new Map<string, Outcome>();
  // One at a time, instances go in graph order (a sequential task list shows them so). With more,
  // the one with the longest chain below it goes first: the four trainings of a sweep start before
  // the evaluations of the first two, and the short stages fill the gaps at the end.
  const pending = opts.jobs > 1 ? byChainBelow(instances) : [...instances];
  const running = new Map<string, Promise<void>>();
  const jobs = Math.max(1, opts.jobs);
  let recording = Promise.resolve();
  const finish = (inst: StageInstance, o: Outcome) => {
    outcomes.set(inst.id, o);
    recording = recording.then(() => opts.onOutcome(inst, o));
  };

  const start = (inst: StageInstance, needs: Map<string, Outcome>, reasons: string[]) => {
    const manifests = Object.fromEntries([...needs].map(([n, o]) => [n, (o as { manifest: Manifest }).manifest]));
    const t = Date.now();
    const job = opts.view
      .running(inst.id, reasons, (io) => opts.executor.run(inst, manifests, io))
      .then(
        (r): Outcome => ({
          state: r.reused ? 'cached' : 'ran',
          manifest: r.manifest,
          seconds: r.reused ? 0 : r.manifest.seconds,
        }),
        (err: unknown): Outcome => ({
          state: 'failed',
          error: (err as Error).message,
          seconds: (Date.now() - t) / 1000,
        }),
      )
      .then((o) => {
        running.delete(inst.id);
        finish(inst, o);
      });
    running.set(inst.id, job);
  };

  while (pending.length || running.size) {
    let progressed = true;
    // Settle every instance whose turn has come; skips and reuses can unblock earlier ones.
    while (progressed) {
      progressed = false;
      for (let i = 0; i < pending.length; i++) {
        const inst = pending[i];
        const needs = new Map<string, Outcome>();
        for (const [name, id] of Object.entries(inst.needs)) {
          const o = outcomes.get(id);
          if (o) needs.set(name, o);
        }
        if (needs.size < Object.keys(inst.needs).length) continue; // an upstream is still running
        const d = decide(inst.planned, needs, opts.signal?.aborted ?? false);
        if (d.action === 'run' && running.size >= jobs) continue;
        pending.splice(i, 1);
        i -= 1;
        progressed = true;
        if (d.action === 'skip') {
          opts.view.skipped(inst.id, d.reason);
          finish(inst, { state: 'skipped', error: d.reason, seconds: 0 });
        } else if (d.action === 'reuse') {
          opts.view.cached(inst.id, `key ${inst.planned.key}`);
          finish(inst, { state: 'cached', manifest: d.manifest, seconds: 0 });
        } else {
          start(inst, needs, d.reasons);
        }
      }
    }
    if (!running.size) {
      if (pending.length)
        throw new Error(
          `internal: ${pending.map((p) => p.id).join(', ')} wait for instances that are not in the graph`,
        );
      break;
    }
    await Promise.race(running.values());
  }
  await recording;
  return outcomes;
}

/** Instances by the length of the longest chain of instances that need them, longest first (stable). */
function byChainBelow(instances: readonly StageInstance[]): StageInstance[] {
  const below = new Map<string, number>();
  for (const inst of [...instances].reverse()) {
    const own = below.get(inst.id) ?? 1;
    below.set(inst.id, own);
    for (const up of Object.values(inst.needs)) below.set(up, Math.max(below.get(up) ?? 1, own + 1));
  }
  return instances
    .map((inst, i) => ({ inst, i }))
    .sort((a, b) => below.get(b.inst.id)! - below.get(a.inst.id)! || a.i - b.i)
    .map((x) => x.inst);
}
