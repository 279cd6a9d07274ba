// What happened in one run, stage by stage: the summary, each stage's outcome, the lock file.
import { lockEntry, writeLock, type LockFile } from '../cache/lockfile.js';
import type { RunSummary } from '../ground/run-summary.js';
import type { Outcome } from './decide.js';
import { headlineMetrics } from './history.js';
import type { Plan, PlannedStage } from './plan.js';

export class RunRecord {
  private readonly outcomes = new Map<string, Outcome>();
  private readonly stages: RunSummary['stages'] = [];
  private readonly lock: LockFile;
  backend: string | undefined;

  constructor(
    private readonly plan: Plan,
    private readonly startedAt: string,
  ) {
    this.lock = { ...plan.lock, stages: { ...plan.lock.stages } };
  }

  /** The stages in plan order, whatever order their outcomes arrived in. */
  get summary(): RunSummary {
    const order = this.plan.stages.map((p) => p.stage.name);
    const stages = [...this.stages].sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
    return {
      pipeline: this.plan.pipeline.name,
      startedAt: this.startedAt,
      ...(this.backend ? { backend: this.backend } : {}),
      stages,
    };
  }

  async add(p: PlannedStage, o: Outcome): Promise<void> {
    const name = p.stage.name;
    this.outcomes.set(name, o);
    this.stages.push({
      name,
      kind: p.stage.kind,
      state: o.state,
      key: p.key,
      seconds: o.seconds,
      dir: this.plan.store.stageDir(name, p.key),
      ...('error' in o ? { error: o.error } : {}),
    });
    if (o.state === 'ran' || o.state === 'cached') this.lock.stages[name] = lockEntry(o.manifest);
    // A finished stage is on record at once, even if a later one takes the process down.
    if (o.state === 'ran') await this.save();
  }

  /** The headline numbers of the ran and cached stages' results (their kinds' StageKind.headline). */
  headline(): Record<string, number> {
    return headlineMetrics(
      this.plan.stages.flatMap((p) => {
        const o = this.outcomes.get(p.stage.name);
        return o && (o.state === 'ran' || o.state === 'cached')
          ? [{ headline: p.impl.headline, result: o.manifest.result }]
          : [];
      }),
    );
  }

  /** The backend that ran this run's TensorFlow stages, as their results recorded it. */
  backendOfResults(): string | undefined {
    for (const o of this.outcomes.values()) if (o.state === 'ran' && o.manifest.backend) return o.manifest.backend;
    return undefined;
  }

  save(): Promise<void> {
    return writeLock(this.plan.lockDir, this.lock);
  }
}
