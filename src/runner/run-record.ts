// What happened in one run, stage by stage: the summary, each stage's outcome, the lock file.
import { lockEntry, writeLock, type LockFile } from '../cache/lockfile.js';
import type { JsonObject, RunSummary } from '../stages/types.js';
import type { Outcome } from './decide.js';
import type { Plan, PlannedStage } from './plan.js';

export class RunRecord {
  readonly summary: RunSummary;
  readonly outcomes = new Map<string, Outcome>();
  private readonly lock: LockFile;

  constructor(private readonly plan: Plan, startedAt: string) {
    this.summary = { pipeline: plan.pipeline.name, startedAt, stages: [] };
    this.lock = { ...plan.lock, stages: { ...plan.lock.stages } };
  }

  async add(p: PlannedStage, o: Outcome): Promise<void> {
    const name = p.stage.name;
    this.outcomes.set(name, o);
    this.summary.stages.push({
      name, kind: p.stage.kind, state: o.state, key: p.key, seconds: o.seconds,
      dir: this.plan.store.stageDir(name, p.key), ...('error' in o ? { error: o.error } : {}),
    });
    if (o.state === 'ran' || o.state === 'cached') this.lock.stages[name] = lockEntry(o.manifest);
    // A finished stage is on record at once, even if a later one takes the process down.
    if (o.state === 'ran') await this.save();
  }

  /** What the ran and cached stages returned, in run order. */
  results(): JsonObject[] {
    return [...this.outcomes.values()].flatMap((o) => (o.state === 'ran' || o.state === 'cached' ? [o.manifest.result] : []));
  }

  save(): Promise<void> {
    return writeLock(this.plan.store.pipelineDir, this.lock);
  }
}
