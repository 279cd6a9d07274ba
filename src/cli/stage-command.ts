// `tfpipe _stage` (hidden): the child side of a stage job process (jobs/stage-process.ts). It
// takes one job over the IPC channel, runs it and reports back; it stops when its parent goes.
import type { FromChild, ToChild } from '../jobs/stage-process.js';
import { EXIT_REFUSED } from '../jobs/stage-process.js';
import { JobRefused, runStageJob } from '../jobs/stage-job.js';
import type { KindRegistry } from '../stages/registry.js';

export async function commandStage(registry: KindRegistry): Promise<number> {
  const parent = process.send?.bind(process);
  if (!parent) {
    process.stderr.write('tfpipe: _stage runs a job handed over by tfpipe itself (run -j, worker); it is not meant to be called by hand\n');
    return 2;
  }
  const send = (m: FromChild) => new Promise<void>((r) => {
    if (!process.connected) return r();
    parent(m, undefined, undefined, () => r());
  });
  const start = await new Promise<ToChild>((r) => process.once('message', (m: ToChild) => r(m)));
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  // The parent died (kill -9 of a worker): stop after the current batch; the work dir stays for a retry.
  process.on('disconnect', stop);
  let code: number;
  try {
    const r = await runStageJob(start.job, {
      registry,
      outputs: start.outputs,
      signal: controller.signal,
      io: { progress: (update) => void send({ type: 'progress', update }), log: (message) => void send({ type: 'log', message }) },
      initBackend: async (runtime) => {
        const { initBackend } = await import('../ml/backend.js');
        return initBackend(runtime.backend, runtime.threads > 0 ? runtime.threads : start.threads);
      },
    });
    await send({ type: 'done', manifest: r.manifest, reused: r.reused });
    code = 0;
  } catch (err) {
    const refused = err instanceof JobRefused;
    code = refused ? EXIT_REFUSED : controller.signal.aborted ? 130 : 1;
    await send({ type: 'failed', message: (err as Error).message, refused });
  }
  // Native thread pools and the IPC channel would keep the process alive.
  process.exit(code);
}
