// -j N: stage instances run in `tfpipe _stage` processes, up to N at once. Each job gets cores / N
// threads unless the pipeline sets runtime.threads, so N jobs do not fight over the cores.
// runtime.threads changes how fast the native kernels run, never what they compute: they give the
// same bits on any thread count (native/README.md).
import { availableParallelism } from 'node:os';
import type { Manifest } from '../cache/store.js';
import type { StageResult } from '../runner/stage-runner.js';
import { Aborted } from '../ground/errors.js';
import type { StepIO } from '../runner/steps.js';
import type { StageInstance } from '../runner/union.js';
import type { StageExecutor } from '../runner/walk.js';
import { stageJob } from './stage-job.js';
import { JobInterrupted, StageProcessPool } from './stage-process.js';

/** Threads for each of `jobs` concurrent jobs when the pipeline does not say. */
export function threadsPerJob(jobs: number, cores = availableParallelism()): number {
  return Math.max(1, Math.floor(cores / Math.max(1, jobs)));
}

export class ProcessExecutor implements StageExecutor {
  readonly backendName = undefined;
  private readonly pool: StageProcessPool;

  constructor(private readonly opts: { outputs: string; jobs: number; signal?: AbortSignal; env?: NodeJS.ProcessEnv }) {
    this.pool = new StageProcessPool(opts.env);
  }

  async run(inst: StageInstance, _needs: Record<string, Manifest>, io: StepIO): Promise<StageResult> {
    try {
      return await this.pool.run(stageJob(inst), {
        outputs: this.opts.outputs,
        threads: threadsPerJob(this.opts.jobs),
        io,
        signal: this.opts.signal,
      });
    } catch (err) {
      if (err instanceof JobInterrupted) throw new Aborted();
      throw err;
    }
  }

  async close(): Promise<void> {
    this.pool.close();
  }
}
