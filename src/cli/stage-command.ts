// `tfpipe _stage` (hidden): the child side of a stage process (executors/stage-process.ts). It runs the
// jobs its parent hands over one at a time, and stops when told to (SIGINT/SIGTERM: the current
// job stops after its batch) or when its parent goes away (kill -9 of a worker).
import type { FromChild, ToChild } from '../executors/stage-process.js';
import { JobRefused, runStageJob } from '../executors/stage-job.js';
import type { KindRegistry } from '../stage-kind/registry.js';

/** The backend of this process was set up for other runtime settings than a job's. */
class OtherRuntime extends Error {}

export async function commandStage(registry: KindRegistry): Promise<number> {
  const parent = process.send?.bind(process);
  if (!parent) {
    process.stderr.write(
      'tfpipe: _stage runs jobs handed over by tfpipe itself (run -j, worker); it is not meant to be called by hand\n',
    );
    return 2;
  }
  const send = (m: FromChild) =>
    new Promise<void>((r) => {
      if (!process.connected) return r();
      parent(m, undefined, undefined, () => r());
    });
  const controller = new AbortController();
  const inbox: ToChild[] = [];
  let wake: (() => void) | undefined;
  process.on('message', (m: ToChild) => {
    inbox.push(m);
    wake?.();
  });
  const stop = () => {
    controller.abort();
    wake?.();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  // The parent died or let go of this process: finish nothing more than the current batch.
  process.on('disconnect', stop);
  // A process initialises the TensorFlow.js backend (and with it the native thread count) once; a
  // job that asks for other settings (another pipeline's runtime.backend or runtime.threads) goes to
  // a new process, so that it runs with what it asked for. (The thread count changes only speed:
  // the native kernels give the same bits on any thread count.)
  let backend: { requested: string; threads: number } | undefined;

  while (!controller.signal.aborted) {
    const start =
      inbox.shift() ??
      (await new Promise<ToChild | undefined>((r) => {
        wake = () => r(inbox.shift());
      }));
    wake = undefined;
    if (!start || controller.signal.aborted) break;
    try {
      const r = await runStageJob(start.job, {
        registry,
        outputs: start.outputs,
        signal: controller.signal,
        io: {
          progress: (update) => void send({ type: 'progress', update }),
          log: (message) => void send({ type: 'log', message }),
        },
        initBackend: async (runtime) => {
          const threads = runtime.threads > 0 ? runtime.threads : start.threads;
          if (backend && (backend.requested !== runtime.backend || backend.threads !== threads)) {
            throw new OtherRuntime(
              `this process runs backend ${backend.requested} with ${backend.threads} thread(s), the job wants ${runtime.backend} with ${threads}`,
            );
          }
          const { initBackend } = await import('../ml/backend.js');
          const info = await initBackend(runtime.backend, threads);
          backend = { requested: runtime.backend, threads };
          return info;
        },
      });
      await send({ type: 'done', manifest: r.manifest, reused: r.reused });
    } catch (err) {
      await send({
        type: 'failed',
        message: (err as Error).message,
        refused: err instanceof JobRefused,
        ...(err instanceof OtherRuntime ? { fresh: true } : {}),
        ...(controller.signal.aborted ? { interrupted: true } : {}),
      });
    }
  }
  // Native thread pools would keep the process alive.
  process.exit(controller.signal.aborted ? 130 : 0);
}
