// Stage jobs in processes of their own: `tfpipe _stage`, started by the -j executor and by queue
// workers. A process per running job keeps a training step (one long synchronous native call) from
// blocking the parent's event loop, which must keep renewing a queue lock and drawing progress.
// A process runs one job at a time and then waits for the next, so Node's start-up and the
// TensorFlow.js backend's are paid once per slot, not once per stage. Parent and child talk over
// Node's IPC channel; a child stops when its parent dies.
import { fork, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { packageRoot } from '../ground/paths.js';
import type { Manifest } from '../cache/store.js';
import type { StageResult } from '../runner/stage-runner.js';
import type { StepIO } from '../runner/steps.js';
import type { ProgressUpdate } from '../ground/progress.js';
import { JobRefused, type StageJob } from './stage-job.js';

export type ToChild = { type: 'start'; job: StageJob; outputs: string; threads: number };
export type FromChild =
  | { type: 'progress'; update: ProgressUpdate }
  | { type: 'log'; message: string }
  | { type: 'done'; manifest: Manifest; reused: boolean }
  /** `fresh`: this process's backend was set up for other runtime settings; run the job in a new one. */
  | { type: 'failed'; message: string; refused: boolean; fresh?: boolean; interrupted?: boolean };

export interface JobOptions {
  /** The outputs folder the child works in. */
  outputs: string;
  /** Threads for the job when the pipeline leaves runtime.threads at 0. */
  threads: number;
  io: StepIO;
  signal?: AbortSignal;
}

const BIN = resolve(packageRoot, 'bin/tfpipe.js');
const TAIL = 4000;

export class JobInterrupted extends Error {
  constructor() {
    super('interrupted');
  }
}

class NeedsFreshProcess extends Error {}

/** One `tfpipe _stage` child, running the jobs handed to it one after another. */
class StageProcess {
  private readonly child: ChildProcess;
  private tail = '';
  private current: { io: StepIO; settle(m: FromChild | undefined): void } | undefined;
  dead = false;
  /** It stopped a job on a signal and is on its way out. */
  interrupted = false;

  constructor(env: NodeJS.ProcessEnv) {
    this.child = fork(BIN, ['_stage'], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], env });
    const keep = (d: Buffer) => {
      this.tail = (this.tail + String(d)).slice(-TAIL);
    };
    this.child.stdout?.on('data', keep);
    this.child.stderr?.on('data', keep);
    this.child.on('message', (m: FromChild) => {
      if (m.type === 'progress') this.current?.io.progress(m.update);
      else if (m.type === 'log') this.current?.io.log(m.message);
      else this.current?.settle(m);
    });
    this.child.on('exit', () => {
      this.dead = true;
      this.current?.settle(undefined);
    });
    this.child.on('error', () => {
      this.dead = true;
      this.current?.settle(undefined);
    });
  }

  run(job: StageJob, opts: JobOptions): Promise<StageResult> {
    return new Promise((resolvePromise, reject) => {
      const interrupt = () => this.child.kill('SIGINT');
      opts.signal?.addEventListener('abort', interrupt, { once: true });
      this.tail = '';
      this.current = {
        io: opts.io,
        settle: (m) => {
          this.current = undefined;
          opts.signal?.removeEventListener('abort', interrupt);
          if (m?.type === 'failed' && m.interrupted) this.interrupted = true;
          if (m?.type === 'done') resolvePromise({ manifest: m.manifest, reused: m.reused });
          else if (m?.type === 'failed' && m.fresh) reject(new NeedsFreshProcess(m.message));
          else if (m?.type === 'failed' && m.refused) reject(new JobRefused(m.message));
          else if (opts.signal?.aborted || (m?.type === 'failed' && m.interrupted) || this.child.exitCode === 130)
            reject(new JobInterrupted());
          else if (m?.type === 'failed') reject(new Error(m.message));
          else {
            const how = this.child.signalCode ? `signal ${this.child.signalCode}` : `exit code ${this.child.exitCode}`;
            reject(
              new Error(
                `the stage process ended with ${how} before finishing${this.tail.trim() ? `; its last output:\n${this.tail.trim()}` : ''}`,
              ),
            );
          }
        },
      };
      if (this.dead) return this.current.settle(undefined);
      const start: ToChild = { type: 'start', job, outputs: opts.outputs, threads: opts.threads };
      this.child.send(start);
    });
  }

  close(): void {
    if (!this.dead && this.child.connected) this.child.disconnect();
  }
}

/** Stage processes, reused from job to job (one per job running at once); a process that crashed or was interrupted is replaced. */
export class StageProcessPool {
  private readonly idle: StageProcess[] = [];

  constructor(private readonly env: NodeJS.ProcessEnv = process.env) {}

  /** Runs the job in an idle process (or a new one); rejects with JobRefused, JobInterrupted or the stage's error. */
  async run(job: StageJob, opts: JobOptions): Promise<StageResult> {
    let proc = this.idle.pop() ?? new StageProcess(this.env);
    try {
      return await proc.run(job, opts);
    } catch (err) {
      if (!(err instanceof NeedsFreshProcess)) throw err;
      proc.close();
      proc = new StageProcess(this.env);
      return await proc.run(job, opts);
    } finally {
      // A process that was interrupted, crashed or is shutting down is not used again.
      if (!proc.dead && !proc.interrupted && !opts.signal?.aborted) this.idle.push(proc);
      else proc.close();
    }
  }

  close(): void {
    for (const p of this.idle.splice(0)) p.close();
  }
}
