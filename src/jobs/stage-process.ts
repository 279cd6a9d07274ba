// A stage job in its own process: `tfpipe _stage`, started by the -j executor and by queue workers.
// A process per job keeps a training step (one long synchronous native call) from blocking the
// parent's event loop, which must keep renewing a queue lock and drawing progress. Parent and
// child talk over Node's IPC channel; the child stops when the parent dies.
import { fork } from 'node:child_process';
import { resolve } from 'node:path';
import { packageRoot } from '../paths.js';
import type { Manifest } from '../cache/store.js';
import type { StageResult } from '../runner/stage-runner.js';
import type { StepIO } from '../runner/steps.js';
import type { ProgressUpdate } from '../stages/types.js';
import { JobRefused, type StageJob } from './stage-job.js';

export type ToChild = { type: 'start'; job: StageJob; outputs: string; threads: number };
export type FromChild =
  | { type: 'progress'; update: ProgressUpdate }
  | { type: 'log'; message: string }
  | { type: 'done'; manifest: Manifest; reused: boolean }
  | { type: 'failed'; message: string; refused: boolean };

export const EXIT_REFUSED = 3;

export interface ChildOptions {
  /** The outputs folder the child works in. */
  outputs: string;
  /** Threads for the job when the pipeline leaves runtime.threads at 0. */
  threads: number;
  io: StepIO;
  signal?: AbortSignal;
  env?: NodeJS.ProcessEnv;
}

const BIN = resolve(packageRoot, 'bin/tfpipe.js');
const TAIL = 4000;

export class JobInterrupted extends Error {
  constructor() {
    super('interrupted');
  }
}

/** Runs the job in a child process; rejects with JobRefused, JobInterrupted or the stage's error. */
export function runInChildProcess(job: StageJob, opts: ChildOptions): Promise<StageResult> {
  return new Promise((resolvePromise, reject) => {
    const child = fork(BIN, ['_stage'], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], env: opts.env ?? process.env });
    let tail = '';
    const keep = (d: Buffer) => { tail = (tail + String(d)).slice(-TAIL); };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    let outcome: FromChild | undefined;
    child.on('message', (m: FromChild) => {
      if (m.type === 'progress') opts.io.progress(m.update);
      else if (m.type === 'log') opts.io.log(m.message);
      else outcome = m;
    });
    const interrupt = () => child.kill('SIGINT');
    opts.signal?.addEventListener('abort', interrupt, { once: true });
    child.on('error', (err) => reject(err));
    child.on('exit', (code, signal) => {
      opts.signal?.removeEventListener('abort', interrupt);
      if (outcome?.type === 'done') resolvePromise({ manifest: outcome.manifest, reused: outcome.reused });
      else if (outcome?.type === 'failed' && outcome.refused) reject(new JobRefused(outcome.message));
      else if (opts.signal?.aborted || code === 130) reject(new JobInterrupted());
      else if (outcome?.type === 'failed') reject(new Error(outcome.message));
      else reject(new Error(`the stage process ended with ${signal ? `signal ${signal}` : `exit code ${code}`} before finishing${tail.trim() ? `; its last output:\n${tail.trim()}` : ''}`));
    });
    const start: ToChild = { type: 'start', job, outputs: opts.outputs, threads: opts.threads };
    child.send(start);
  });
}
