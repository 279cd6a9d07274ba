// --queue: stage instances go to BullMQ as jobs, and `tfpipe worker`s anywhere that share the
// outputs folder run them. The walk hands over an instance only once its needs finished, so
// downstream jobs are queued as upstream ones complete. A job's id is its store, pipeline, stage
// and key: the same work is never queued twice, and a coordinator started again after dying finds
// the jobs it queued and waits for them instead of queueing them again.
//
// Redis may go away mid-run (killed, restarted without persistence). The coordinator then says so
// once, waits for it, and looks at each of its jobs again: a job Redis lost is either finished (its
// result is in the store: a worker wrote it while Redis was away) or queued again.
import { hostname } from 'node:os';
import { type Job, Queue, QueueEvents } from 'bullmq';
import type { Manifest } from '../cache/store.js';
import { describeJob, stageJob, type StageJob } from './stage-job.js';
import type { StoreIdentity } from './store-id.js';
import type { StageResult } from '../runner/stage-runner.js';
import { Aborted } from '../ground/errors.js';
import type { StepIO } from '../runner/steps.js';
import type { StageInstance } from '../runner/union.js';
import type { StageExecutor } from '../runner/walk.js';
import type { ProgressUpdate } from '../ground/progress.js';
import { checkRedis, connectionOf, QUEUE_NAME, type QueueUrl } from './redis.js';
import { type QueueSecret, signJob } from './signing.js';

/** What a worker sends as a job's progress. */
export type JobProgressMessage = { progress: ProgressUpdate } | { log: string };

/** What a worker returns for a finished job. */
export interface JobReturn {
  manifest: Manifest;
  reused: boolean;
  worker: string;
}

function jobIdOf(job: StageJob): string {
  // BullMQ ids may not contain ':'; names are [A-Za-z0-9_-] and keys hex.
  return [job.store?.id ?? 'local', job.pipeline.name, job.stage, job.key].join('.');
}

/** How long finished jobs stay in Redis (for `tfpipe worker` logs and the bench), in seconds. */
const KEEP_SECONDS = 7 * 24 * 3600;
/** How often a job's state is read even without an event (events sent while Redis was away are lost). */
const POLL_MS = 2000;
/** How long closing waits for Redis before it lets go of the connections anyway. */
const CLOSE_WAIT_MS = 3000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

export interface QueueExecutorOptions {
  store: StoreIdentity;
  secret: QueueSecret;
  /** One line for the run's log (lost and regained connections). */
  notify: (line: string) => void;
  signal?: AbortSignal;
}

export class QueueExecutor implements StageExecutor {
  readonly backendName = undefined;
  private readonly watchers = new Map<string, StepIO>();
  /** Wakes the wait of a job when an event says it finished. */
  private readonly wakers = new Map<string, () => void>();
  /** Jobs this coordinator queued that may still be waiting; removed if it is interrupted. */
  private readonly queued = new Set<string>();
  /** Set while the connection to Redis is lost: the first error's message. */
  private lost: string | undefined;
  /** When Redis last answered again after a loss (ms). */
  private regained = 0;
  private closing = false;

  private constructor(
    private readonly q: QueueUrl,
    private readonly queue: Queue,
    private readonly events: QueueEvents,
    private readonly opts: QueueExecutorOptions,
  ) {
    events.on('progress', ({ jobId, data }) => {
      const io = this.watchers.get(jobId);
      const m = data as JobProgressMessage;
      if (io && typeof m === 'object' && m !== null) {
        if ('progress' in m) io.progress(m.progress);
        else if ('log' in m) io.log(m.log);
      }
    });
    events.on('active', ({ jobId }) => this.watchers.get(jobId)?.log('a worker took the job'));
    events.on('stalled', ({ jobId }) =>
      this.watchers.get(jobId)?.log('its worker stopped answering; the job went back to the queue for another worker'),
    );
    events.on('completed', ({ jobId }) => this.wakers.get(jobId)?.());
    events.on('failed', ({ jobId }) => this.wakers.get(jobId)?.());
    // Without a listener BullMQ prints every failed reconnection as a stack trace.
    const lost = (err: Error) => {
      // One line per outage: the second connection may still report the first one's failure.
      if (this.lost !== undefined || this.closing || Date.now() - this.regained < 5000) return;
      this.lost = err.message;
      opts.notify(
        `tfpipe: lost the connection to Redis at ${q.shown} (${err.message}); waiting for it to come back, then checking every job`,
      );
    };
    queue.on('error', lost);
    events.on('error', lost);
  }

  static async connect(q: QueueUrl, opts: QueueExecutorOptions): Promise<QueueExecutor> {
    const connection = connectionOf(q);
    const queue = new Queue(QUEUE_NAME, { connection });
    const events = new QueueEvents(QUEUE_NAME, { connection });
    await Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);
    return new QueueExecutor(q, queue, events, opts);
  }

  async run(inst: StageInstance, _needs: Record<string, Manifest>, io: StepIO): Promise<StageResult> {
    const data = signJob(stageJob(inst, this.opts.store), this.opts.secret);
    const id = jobIdOf(data);
    this.watchers.set(id, io);
    try {
      await this.submit(id, data, io);
      const done = await this.untilFinished(id, data, inst, io);
      if (done.worker) io.log(`${done.reused ? 'found done' : 'ran'} on worker ${done.worker}`);
      // The worker wrote into its view of the shared folder; this must be the same folder.
      const v = await inst.plan.store.verify(data.stage, data.key);
      if (!v.ok) {
        throw new Error(
          `worker ${done.worker} finished ${describeJob(data)}, but its result is not usable here (${v.reason}): ` +
            `do this machine (${hostname()}) and the worker share the outputs folder?`,
        );
      }
      return { manifest: v.manifest, reused: done.reused };
    } finally {
      this.watchers.delete(id);
    }
  }

  /** Resolves with `p`, or rejects with Aborted as soon as the run is interrupted (Redis may be away). */
  private abortable<T>(p: Promise<T>): Promise<T> {
    const signal = this.opts.signal;
    if (!signal) return p;
    p.catch(() => {}); // settled later, after nobody waits for it
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => reject(new Aborted());
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }

  /** A Redis call answered: if the connection had been lost, say it is back. */
  private answered(): void {
    if (this.lost === undefined) return;
    this.lost = undefined;
    this.regained = Date.now();
    this.opts.notify(`tfpipe: Redis at ${this.q.shown} answers again; checking every job`);
  }

  /** Queues the job unless it is already queued or running (queued by an earlier run). */
  private async submit(id: string, data: StageJob, io: StepIO): Promise<void> {
    const existing = await this.abortable(this.queue.getJob(id));
    this.answered();
    if (existing) {
      const state = await this.abortable(existing.getState());
      if (state === 'waiting' || state === 'active' || state === 'delayed' || state === 'prioritized') {
        io.log(
          `job ${id} is already ${state === 'active' ? 'running' : 'queued'} (queued by an earlier run); waiting for it`,
        );
        return;
      }
      // A finished job of an earlier run: this run decided the stage must run again.
      await this.abortable(existing.remove()).catch((err: unknown) => {
        if (err instanceof Aborted) throw err;
      });
    }
    await this.add(id, data);
    io.log(`queued as job ${id}`);
  }

  private async add(id: string, data: StageJob): Promise<Job> {
    const job = await this.abortable(
      this.queue.add('stage', data, {
        jobId: id,
        attempts: 1,
        removeOnComplete: { age: KEEP_SECONDS },
        removeOnFail: { age: KEEP_SECONDS },
      }),
    );
    this.queued.add(id);
    return job;
  }

  /**
   * The job's outcome: woken by its completed/failed event, and reading its state every POLL_MS
   * anyway, since events sent while Redis was away never arrive and a restarted Redis may have
   * lost the job altogether.
   */
  private async untilFinished(id: string, data: StageJob, inst: StageInstance, io: StepIO): Promise<JobReturn> {
    for (;;) {
      const state = await this.abortable(this.queue.getJobState(id));
      this.answered();
      if (state === 'completed' || state === 'failed') {
        const job = await this.abortable(this.queue.getJob(id));
        if (job && state === 'failed') throw new Error(job.failedReason);
        if (job) return job.returnvalue as JobReturn;
      } else if (state === 'unknown') {
        // Gone: Redis restarted without persistence (or someone removed the job).
        const v = await inst.plan.store.verify(data.stage, data.key);
        if (v.ok) {
          io.log(`job ${id} is gone from Redis, but its result is in the store: a worker finished it meanwhile`);
          return { manifest: v.manifest, reused: false, worker: '' };
        }
        io.log(`job ${id} is gone from Redis (restarted without persistence?); queueing it again`);
        await this.add(id, data);
      }
      await this.abortable(
        new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, POLL_MS);
          this.wakers.set(id, () => {
            clearTimeout(timer);
            resolve();
          });
        }),
      ).finally(() => this.wakers.delete(id));
    }
  }

  async close(): Promise<void> {
    this.closing = true;
    if (this.opts.signal?.aborted) {
      // Interrupted: jobs nobody took yet are withdrawn; running ones finish on their workers
      // (their results are kept, and a later run uses them). Only while Redis answers.
      const withdraw = async () => {
        for (const id of this.queued) {
          const job = await this.queue.getJob(id);
          if (job && (await job.getState()) === 'waiting') await job.remove().catch(() => {});
        }
      };
      const up = await checkRedis(this.q, CLOSE_WAIT_MS).then(
        () => true,
        () => false,
      );
      if (up) await Promise.race([withdraw().catch(() => {}), sleep(CLOSE_WAIT_MS * 3)]);
      else
        this.opts.notify(
          `tfpipe: Redis at ${this.q.shown} does not answer; jobs this run queued there were not withdrawn`,
        );
    }
    const closed = Promise.all([this.events.close(), this.queue.close()]).then(
      () => true,
      () => true,
    );
    if (!(await Promise.race([closed, sleep(CLOSE_WAIT_MS).then(() => false)]))) {
      // Redis is away: drop the connections instead of waiting for it to say goodbye (which
      // disconnecting may do too, so it is not awaited).
      Promise.all([this.events.disconnect(), this.queue.disconnect()]).catch(() => {});
    }
  }
}
