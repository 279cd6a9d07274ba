// What a reporter shows: the runner walks the stages (stage instances, for a sweep) and tells the
// reporter about each one exactly once, as cached, skipped or running; with -j several run at
// once. The plain and listr reporters both implement this, so the runner's logic exists once and
// neither reporter decides anything.
import type { ProgressUpdate } from '../ground/progress.js';

export interface StepIO {
  progress(update: ProgressUpdate): void;
  log(message: string): void;
}

export interface StageRow {
  /** The stage, or the stage instance's id (`train@3f2a1b9c`) in a sweep. */
  name: string;
  kind: string;
  /** How to show it, if not by its name: `train lr=0.002`. */
  title?: string;
}

export interface ViewOptions {
  /** Several rows may be running at once (-j N, queue workers). */
  concurrent?: boolean;
}

/** One run's display, for the stages given to StepReporter.begin, in that order. */
export interface RunView {
  cached(stage: string, reason: string): void;
  skipped(stage: string, reason: string): void;
  /** Shows the stage running while `work` runs, e.g. with "setting lr changed: 0.001 → 0.0003". */
  running<T>(stage: string, reasons: string[], work: (io: StepIO) => Promise<T>): Promise<T>;
  /** After every stage was reported. */
  end(): Promise<void>;
}

export interface StepReporter {
  info(message: string): void;
  begin(stages: StageRow[], opts?: ViewOptions): RunView;
}
