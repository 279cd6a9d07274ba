// `tfpipe worker --queue URL [--concurrency N] [--outputs DIR]`: serve stage jobs until Ctrl-C.
import { resolve } from 'node:path';
import { EXIT, onInterrupt, positiveInt, UsageError } from './errors.js';

export interface WorkerCommandOptions {
  queue?: string;
  concurrency?: string;
  outputs?: string;
  lockTimeout?: string;
}

export async function commandWorker(opts: WorkerCommandOptions): Promise<number> {
  if (!opts.queue) throw new UsageError('worker needs --queue redis://HOST:PORT');
  const concurrency = positiveInt(opts.concurrency, 1, '--concurrency');
  const lockSeconds = positiveInt(opts.lockTimeout, 30, '--lock-timeout');
  const { checkRedis, parseQueueUrl } = await import('../executors/redis.js');
  const queue = parseQueueUrl(opts.queue);
  await checkRedis(queue);
  const { runWorker } = await import('../executors/worker.js');
  const interrupt = onInterrupt();
  // Without --outputs or $TFPIPE_OUTPUTS, each job's own outputs folder (the path the coordinator
  // wrote in it), which is right where every machine mounts the shared folder at the same path.
  const outputs = opts.outputs ?? process.env.TFPIPE_OUTPUTS;
  try {
    await runWorker({
      queue,
      concurrency,
      lockSeconds,
      outputs: outputs === undefined ? undefined : resolve(outputs),
      out: process.stdout,
      signal: interrupt.signal,
    });
    // Connections to a Redis that is gone may still hold timers; the worker is done all the same.
    setTimeout(() => process.exit(), 2000).unref();
    return EXIT.interrupted;
  } finally {
    interrupt.release();
  }
}
