// What a reporter drives: one step per stage, run in order. The plain and listr reporters both
// consume this, so the runner's logic exists once.
import type { ProgressUpdate } from '../stages/types.js';

export interface StepIO {
  progress(update: ProgressUpdate): void;
  log(message: string): void;
}

export interface Step {
  name: string;
  kind: string;
  /** Decided when the step's turn comes (an upstream may have failed meanwhile). */
  skip(): { reason: string; cached: boolean } | undefined;
  /** Why it runs, e.g. "setting lr changed: 0.001 → 0.0003". */
  reasons(): string[];
  exec(io: StepIO): Promise<void>;
}

export interface StepReporter {
  info(message: string): void;
  runSteps(steps: Step[]): Promise<void>;
}
