// The default executor: stages run one after another in this process (`tfpipe run` without -j).
import type { Manifest } from '../cache/store.js';
import { StageRunner, type InitBackend, type StageResult } from '../runner/stage-runner.js';
import type { StepIO } from '../runner/steps.js';
import type { StageInstance } from '../runner/union.js';
import type { StageExecutor } from '../runner/walk.js';

export class InProcessExecutor implements StageExecutor {
  private readonly runner: StageRunner;

  constructor(initBackend?: InitBackend, signal?: AbortSignal) {
    this.runner = new StageRunner(initBackend, signal);
  }

  get backendName(): string | undefined {
    return this.runner.backendName;
  }

  run(inst: StageInstance, needs: Record<string, Manifest>, io: StepIO): Promise<StageResult> {
    return this.runner.run(inst.plan, inst.planned, needs, io);
  }

  async close(): Promise<void> {}
}
