// Live progress on a TTY: one listr2 task per stage, cached ones shown as skipped "(cached)".
// listr2 wants its task list up front and runs it itself; each task here waits for the runner
// to report that stage, so the runner stays the one that walks the graph. With several jobs the
// tasks run concurrently and a task waiting for its turn shows as waiting, not spinning, so the
// spinners are exactly the running jobs.
import { Listr, ListrTaskState } from 'listr2';
import { formatDuration, formatProgress } from './format.js';
import type { RunView, StageRow, StepIO, StepReporter, ViewOptions } from './steps.js';

type Turn = { skip: string } | { reasons: string[]; work: (io: StepIO) => Promise<void> };

export class ListrReporter implements StepReporter {
  info(message: string): void {
    process.stderr.write(`${message}\n`);
  }

  begin(stages: StageRow[], opts: ViewOptions = {}): RunView {
    const turns = new Map(stages.map((s) => [s.name, deferred<Turn>()]));
    const list = new Listr(
      stages.map((s) => ({
        title: `${s.title ?? s.name} (${s.kind})`,
        task: async (
          _ctx: unknown,
          task: { output: string; title: string; skip(message?: string): void; task: { state$: ListrTaskState } },
        ) => {
          const waiting = turns.get(s.name) as Deferred<Turn>;
          if (opts.concurrent && !waiting.settled) task.task.state$ = ListrTaskState.WAITING;
          const turn = await waiting.promise;
          if (opts.concurrent) task.task.state$ = ListrTaskState.STARTED;
          if ('skip' in turn) {
            task.skip(turn.skip);
            return;
          }
          const t0 = Date.now();
          task.output = turn.reasons.join('; ');
          await turn.work({
            progress: (u) => {
              task.output = formatProgress(u, { bar: true });
            },
            log: (m) => {
              task.output = m;
            },
          });
          task.title = `${s.title ?? s.name} (${s.kind}) — ${formatDuration((Date.now() - t0) / 1000)}`;
        },
        rendererOptions: { outputBar: 1, persistentOutput: false },
      })),
      {
        concurrent: opts.concurrent === true,
        exitOnError: false,
        rendererOptions: { collapseErrors: false, collapseSkips: false },
      },
    );
    const finished = list.run().catch(() => {
      // failures are the runner's to record; the task list only shows them
    });
    const turn = (stage: string, t: Turn) => turns.get(stage)?.resolve(t);
    const titles = new Map(stages.map((s) => [s.name, s.title ?? s.name]));
    const shown = (stage: string) => titles.get(stage) ?? stage;
    return {
      cached: (stage) => turn(stage, { skip: `${shown(stage)} (cached)` }),
      skipped: (stage, reason) => turn(stage, { skip: `${shown(stage)} skipped: ${reason}` }),
      running: (stage, reasons, work) =>
        new Promise((resolve, reject) => {
          turn(stage, {
            reasons,
            work: async (io) => {
              try {
                resolve(await work(io));
              } catch (err) {
                reject(err);
                throw err;
              }
            },
          });
        }),
      end: async () => {
        for (const [stage, d] of turns) if (!d.settled) turn(stage, { skip: `${shown(stage)} not reached` });
        await finished;
      },
    };
  }
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  settled: boolean;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  const d: Deferred<T> = {
    promise,
    settled: false,
    resolve: (v) => {
      d.settled = true;
      resolve(v);
    },
  };
  return d;
}
