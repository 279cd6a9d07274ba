// `tfpipe worker --queue URL`: takes stage jobs from BullMQ and runs each in a stage process
// (`tfpipe _stage`, one per slot, reused), so that this process's event loop stays free to renew
// the jobs' locks while a training step blocks the child's. A worker killed with -9 stops renewing; BullMQ's stalled-job
// check hands the job to another worker, whose child takes over the key's work dir and resumes.
// It runs only jobs signed with its queue secret (signing.ts), and it stops on the first SIGINT or
// SIGTERM even when Redis is gone (then without handing its jobs back: their locks expire).
import { hostname } from 'node:os';
import type { Writable } from 'node:stream';
import { UnrecoverableError, WaitingError, Worker, type Job } from 'bullmq';
import { threadsPerJob } from './child-processes.js';
import { describeJob, JobRefused, type StageJob } from './stage-job.js';
import { JobInterrupted, StageProcessPool } from './stage-process.js';
import { formatDuration, formatProgress, logIntervalMs, progressThrottle } from '../runner/format.js';
import type { StepIO } from '../runner/steps.js';
import type { ProgressUpdate } from '../ground/progress.js';
import type { JobProgressMessage, JobReturn } from './queue.js';
import { checkRedis, connectionOf, QUEUE_NAME, type QueueUrl } from './redis.js';
import { queueSecret, verifyJob } from './signing.js';

export interface WorkerOptions {
  queue: QueueUrl;
  /** This machine's view of the shared outputs folder; by default each job's own (same mount path everywhere). */
  outputs?: string;
  concurrency: number;
  /** A worker that stops renewing its job locks for this long counts as dead. */
  lockSeconds: number;
  out: Writable;
  signal: AbortSignal;
}

/** How often a job's progress goes to Redis (each is a write); log lines always go. */
const PROGRESS_EVERY_MS = 1000;

export async function runWorker(opts: WorkerOptions): Promise<void> {
  const name = `${hostname()}:${process.pid}`;
  const say = (line: string) => opts.out.write(`${line}\n`);
  const children = new AbortController();
  const pool = new StageProcessPool();

  const processor = async (job: Job, token?: string): Promise<JobReturn> => {
    const data = job.data as StageJob;
    // Nothing of an unverified job is trusted, not even its name for the log.
    const outputs = opts.outputs ?? (typeof data?.store?.root === 'string' ? data.store.root : undefined);
    const refusal = outputs
      ? verifyJob(data, await queueSecret(outputs, false))
      : 'the job names no outputs folder and the worker has none (--outputs DIR or $TFPIPE_OUTPUTS)';
    if (refusal) {
      say(`[job ${job.id}] REFUSED, nothing ran: ${refusal}`);
      throw new UnrecoverableError(`refused by worker ${name}: ${refusal}`);
    }
    const tag = `[${describeJob(data)}]`;
    const t0 = Date.now();
    say(`${tag} started (job ${job.id})`);
    const io = relay(job, (line) => say(`${tag} ${line}`), logIntervalMs());
    try {
      if (!outputs) throw new JobRefused(`${tag} names no outputs folder; start the worker with --outputs DIR`);
      const r = await pool.run(data, {
        outputs,
        threads: threadsPerJob(opts.concurrency),
        io,
        signal: children.signal,
      });
      say(`${tag} ${r.reused ? 'was already done' : 'done'} in ${formatDuration((Date.now() - t0) / 1000)}`);
      return { manifest: r.manifest, reused: r.reused, worker: name };
    } catch (err) {
      if (err instanceof JobRefused) {
        say(`${tag} REFUSED: ${err.message}`);
        throw new UnrecoverableError(`refused by worker ${name}: ${err.message}`);
      }
      if (err instanceof JobInterrupted) {
        // This worker is stopping: the job goes back to the queue, its work dir stays for the next taker.
        say(`${tag} interrupted; handing the job back to the queue`);
        await job.moveToWait(token);
        throw new WaitingError();
      }
      say(`${tag} FAILED after ${formatDuration((Date.now() - t0) / 1000)}: ${(err as Error).message}`);
      throw err;
    }
  };

  const worker = new Worker(QUEUE_NAME, processor, {
    connection: connectionOf(opts.queue),
    concurrency: opts.concurrency,
    name,
    lockDuration: opts.lockSeconds * 1000,
    stalledInterval: opts.lockSeconds * 1000,
    // A worker killed twice on the same job is bad luck, not a bad job.
    maxStalledCount: 2,
  });
  // One line per new error, not one per reconnection attempt while Redis is away.
  let lastError = '';
  worker.on('error', (err) => {
    if (err.message !== lastError) say(`worker: ${err.message}`);
    lastError = err.message;
  });
  worker.on('ready', () => {
    lastError = '';
  });
  await worker.waitUntilReady();
  say(
    `tfpipe worker ${name}: ${opts.concurrency} job(s) at a time from ${opts.queue.shown}, outputs ${opts.outputs ?? 'as each job says'}`,
  );
  await new Promise<void>((resolve) => {
    if (opts.signal.aborted) return resolve();
    opts.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  say('tfpipe worker: stopping; running jobs go back to the queue');
  children.abort();
  await closeWorker(worker, opts.queue, say);
  pool.close();
}

/**
 * Closes the BullMQ worker: it waits for the running jobs to stop and go back to the queue, which
 * needs Redis. While Redis answers that is what happens; once it does not, the worker lets go of
 * it rather than wait forever (SIGTERM from systemd, Docker or Kubernetes must stop it).
 */
async function closeWorker(worker: Worker, q: QueueUrl, say: (line: string) => void): Promise<void> {
  const closed = worker.close().then(
    () => true,
    () => true,
  );
  for (;;) {
    if (await Promise.race([closed, new Promise<false>((r) => setTimeout(() => r(false), 1000).unref())])) return;
    const up = await checkRedis(q, 1000).then(
      () => true,
      () => false,
    );
    if (!up) {
      say(
        `tfpipe worker: Redis at ${q.shown} does not answer; stopping without it (jobs it lists as running here go back to the queue when their locks expire)`,
      );
      // Disconnecting may itself wait for Redis; it is not awaited.
      worker.disconnect().catch(() => {});
      return;
    }
  }
}

/** Progress and log lines of a job: printed here (progress throttled) and sent to the coordinator. */
function relay(job: Job, print: (line: string) => void, printEveryMs: number): StepIO {
  const sendDue = progressThrottle(PROGRESS_EVERY_MS);
  const printDue = progressThrottle(printEveryMs);
  const send = (m: JobProgressMessage) => {
    job.updateProgress(m).catch(() => {});
  };
  return {
    progress: (u: ProgressUpdate) => {
      if (sendDue(u)) send({ progress: u });
      if (printDue(u)) print(formatProgress(u));
    },
    log: (message: string) => {
      send({ log: message });
      print(message);
    },
  };
}
