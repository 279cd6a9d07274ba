// Line-based progress for CI, pipes and NO_COLOR: one line per event, progress throttled.
import type { Writable } from 'node:stream';
import { formatDuration, formatProgress } from './format.js';
import type { Step, StepReporter } from './steps.js';

export class PlainReporter implements StepReporter {
  constructor(private readonly out: Writable, private readonly intervalMs = Number(process.env.TFPIPE_LOG_INTERVAL_MS ?? 10_000)) {}

  info(message: string): void {
    this.out.write(`${message}\n`);
  }

  async runSteps(steps: Step[]): Promise<void> {
    for (const step of steps) {
      const tag = `[${step.name}]`;
      const skip = step.skip();
      if (skip) {
        this.out.write(`${tag} ${skip.cached ? 'cached' : 'skipped'}: ${skip.reason}\n`);
        continue;
      }
      this.out.write(`${tag} running (${step.kind}): ${step.reasons().join('; ')}\n`);
      const t0 = Date.now();
      let last = 0;
      try {
        await step.exec({
          progress: (u) => {
            const now = Date.now();
            // Always print the end of an epoch/batch loop; otherwise at most one line per interval.
            const boundary = u.batch !== undefined && u.batches !== undefined && u.batch === u.batches;
            if (boundary || now - last >= this.intervalMs) {
              last = now;
              this.out.write(`${tag} ${formatProgress(u)}\n`);
            }
          },
          log: (m) => this.out.write(`${tag} ${m}\n`),
        });
        this.out.write(`${tag} done in ${formatDuration((Date.now() - t0) / 1000)}\n`);
      } catch (err) {
        this.out.write(`${tag} FAILED after ${formatDuration((Date.now() - t0) / 1000)}: ${(err as Error).message}\n`);
      }
    }
  }
}
