// Live progress on a TTY: one listr2 task per stage, cached ones shown as skipped "(cached)".
import { Listr } from 'listr2';
import { formatDuration, formatProgress } from './format.js';
import type { Step, StepReporter } from './steps.js';

export class ListrReporter implements StepReporter {
  info(message: string): void {
    process.stderr.write(`${message}\n`);
  }

  async runSteps(steps: Step[]): Promise<void> {
    const list = new Listr(
      steps.map((step) => ({
        title: `${step.name} (${step.kind})`,
        skip: () => {
          const s = step.skip();
          return s ? (s.cached ? `${step.name} (cached)` : `${step.name} skipped: ${s.reason}`) : false;
        },
        task: async (_ctx: unknown, task: { output: string; title: string }) => {
          const t0 = Date.now();
          task.output = step.reasons().join('; ');
          await step.exec({
            progress: (u) => { task.output = formatProgress(u, { bar: true }); },
            log: (m) => { task.output = m; },
          });
          task.title = `${step.name} (${step.kind}) — ${formatDuration((Date.now() - t0) / 1000)}`;
        },
        rendererOptions: { outputBar: 1, persistentOutput: false },
      })),
      { concurrent: false, exitOnError: false, rendererOptions: { collapseErrors: false, collapseSkips: false } },
    );
    try {
      await list.run();
    } catch {
      // failures are recorded by the steps themselves
    }
  }
}
