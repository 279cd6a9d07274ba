// Line-based progress for CI, pipes and NO_COLOR: one line per event, progress throttled.
import type { Writable } from 'node:stream';
import { formatDuration, formatProgress, logIntervalMs, progressThrottle } from './format.js';
import type { RunView, StageRow, StepIO, StepReporter } from './steps.js';

export class PlainReporter implements StepReporter {
  constructor(
    private readonly out: Writable,
    private readonly intervalMs = logIntervalMs(),
  ) {}

  info(message: string): void {
    this.out.write(`${message}\n`);
  }

  begin(stages: StageRow[]): RunView {
    const kinds = new Map(stages.map((s) => [s.name, s.kind]));
    const titles = new Map(stages.map((s) => [s.name, s.title ?? s.name]));
    const tag = (stage: string) => `[${titles.get(stage) ?? stage}]`;
    const line = (stage: string, text: string) => this.out.write(`${tag(stage)} ${text}\n`);
    return {
      cached: (stage, reason) => line(stage, `cached: ${reason}`),
      skipped: (stage, reason) => line(stage, `skipped: ${reason}`),
      running: async (stage, reasons, work) => {
        line(stage, `running (${kinds.get(stage)}): ${reasons.join('; ')}`);
        const t0 = Date.now();
        try {
          const value = await work(this.io(tag(stage)));
          line(stage, `done in ${formatDuration((Date.now() - t0) / 1000)}`);
          return value;
        } catch (err) {
          line(stage, `FAILED after ${formatDuration((Date.now() - t0) / 1000)}: ${(err as Error).message}`);
          throw err;
        }
      },
      end: async () => {},
    };
  }

  private io(tag: string): StepIO {
    const due = progressThrottle(this.intervalMs);
    return {
      progress: (u) => {
        if (due(u)) this.out.write(`${tag} ${formatProgress(u)}\n`);
      },
      log: (m) => this.out.write(`${tag} ${m}\n`),
    };
  }
}
