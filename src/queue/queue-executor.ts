// --queue: stage instances go to BullMQ as jobs, and `tfpipe worker`s anywhere that share the
// outputs folder run them. The walk hands over an instance only once its needs finished, so
// downstream jobs are queued as upstream ones complete. A job's id is its store, pipeline, stage
// and key: the same work is never queued twice, and a coordinator started again after dying finds
// the jobs it queued and waits for them instead of queueing them again.
import { hostname } from 'node:os';
import { type Job, Queue, QueueEvents } from 'bullmq';
import type { Manifest } from '../cache/store.js';
import { describeJob, stageJob, type StageJob } from '../jobs/stage-job.js';
import type { StoreIdentity } from '../jobs/store-id.js';
import { Aborted, type StageResult } from '../runner/stage-runner.js';
import type { StepIO } from '../runner/steps.js';
import type { StageInstance } from '../runner/union.js';
import type { StageExecutor } from '../runner/walk.js';
import type { ProgressUpdate } from '../stages/types.js';
import { connectionOf, QUEUE_NAME, type QueueUrl } from './redis.js';

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

export class QueueExecutor implements StageExecutor {
  readonly backendName = undefined;
  private readonly watchers = new Map<string, StepIO>();
  /** Jobs this coordinator queued that may still be waiting; removed if it is interrupted. */
  private readonly queued = new Set<string>();

  private constructor(
    private readonly queue: Queue,
    private readonly events: QueueEvents,
    private readonly store: StoreIdentity,
    private readonly signal?: AbortSignal,
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
  }

  static async connect(q: QueueUrl, store: StoreIdentity, signal?: AbortSignal): Promise<QueueExecutor> {
    const connection = connectionOf(q);
    const queue = new Queue(QUEUE_NAME, { connection });
    const events = new QueueEvents(QUEUE_NAME, { connection });
    await Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);
    return new QueueExecutor(queue, events, store, signal);
  }

  async run(inst: StageInstance, _needs: Record<string, Manifest>, io: StepIO): Promise<StageResult> {
    const data = stageJob(inst, this.store);
    const id = jobIdOf(data);
    this.watchers.set(id, io);
    try {
      const job = await this.submit(id, data, io);
      const done = (await this.untilFinished(job)) as JobReturn;
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

  /** The job for `id`: the one already queued or running, or a new one. */
  private async submit(id: string, data: StageJob, io: StepIO): Promise<Job> {
    const existing = await this.queue.getJob(id);
    if (existing) {
      const state = await existing.getState();
      if (state === 'waiting' || state === 'active' || state === 'delayed' || state === 'prioritized') {
        io.log(
          `job ${id} is already ${state === 'active' ? 'running' : 'queued'} (queued by an earlier run); waiting for it`,
        );
        return existing;
      }
      // A finished job of an earlier run: this run decided the stage must run again.
      await existing.remove().catch(() => {});
    }
    const job = await this.queue.add('stage', data, {
      jobId: id,
      attempts: 1,
      removeOnComplete: { age: KEEP_SECONDS },
      removeOnFail: { age: KEEP_SECONDS },
    });
    this.queued.add(id);
    io.log(`queued as job ${id}`);
    return job;
  }

  private untilFinished(job: Job): Promise<unknown> {
    const signal = this.signal;
    if (!signal) return job.waitUntilFinished(this.events);
    return new Promise((resolve, reject) => {
      const onAbort = () => reject(new Aborted());
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      job
        .waitUntilFinished(this.events)
        .then(resolve, reject)
        .finally(() => signal.removeEventListener('abort', onAbort));
    });
  }

  async close(): Promise<void> {
    if (this.signal?.aborted) {
      // Interrupted: jobs nobody took yet are withdrawn; running ones finish on their workers
      // (their results are kept, and a later run uses them).
      for (const id of this.queued) {
        const job = await this.queue.getJob(id);
        if (job && (await job.getState()) === 'waiting') await job.remove().catch(() => {});
      }
    }
    await this.events.close();
    await this.queue.close();
  }
}
