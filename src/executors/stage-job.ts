// One stage instance as a self-contained job: what a `-j` child process or a queue worker on
// another machine needs to run it. The job carries the variant's pipeline document as written
// (before defaults) and the key the coordinator computed; the runner of the job resolves the
// document with its own schemas and kind versions and refuses the job if it gets another key,
// so a worker with other code never writes a result under a key it did not compute.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { documentSource, type ResolvedPipeline, resolvePipeline } from '../config/load.js';
import { ConfigError, formatProblem } from '../ground/errors.js';
import { explainChange, type KeyInputs } from '../cache/keys.js';
import type { Manifest } from '../cache/store.js';
import { packageRoot } from '../ground/paths.js';
import { makePlan } from '../runner/plan.js';
import { StageRunner, type InitBackend, type StageResult } from '../runner/stage-runner.js';
import type { StepIO } from '../runner/steps.js';
import type { StageInstance } from '../runner/union.js';
import type { KindRegistry } from '../stage-kind/registry.js';
import type { JsonObject } from '../ground/json.js';
import { readStoreId, type StoreIdentity } from './store-id.js';

const JOB_FORMAT = 1;

export interface StageJob {
  format: typeof JOB_FORMAT;
  /** The coordinator's tfpipe version, for messages. */
  tfpipe: string;
  /** Present for queue jobs: the outputs folder the result must land in. */
  store?: StoreIdentity;
  pipeline: { name: string; file: string; document: JsonObject };
  stage: string;
  key: string;
  /** What the coordinator hashed into the key, to say why a worker's key differs. */
  inputs: KeyInputs;
  force: boolean;
  /** ms since the epoch; a result finished after it satisfies even a forced job. */
  requestedAt: number;
}

/** A job the runner will not run: its code computes another key, or it sees another store. */
export class JobRefused extends Error {
  override readonly name = 'JobRefused';
}

const tfpipeVersion: string = (
  JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string }
).version;

export function stageJob(inst: StageInstance, store?: StoreIdentity): StageJob {
  const { pipeline } = inst.plan;
  return {
    format: JOB_FORMAT,
    tfpipe: tfpipeVersion,
    ...(store ? { store } : {}),
    pipeline: { name: pipeline.name, file: pipeline.file, document: pipeline.document },
    stage: inst.planned.stage.name,
    key: inst.planned.key,
    inputs: inst.planned.inputs,
    force: inst.planned.forced,
    requestedAt: Date.now(),
  };
}

export function describeJob(job: StageJob): string {
  return `${job.pipeline.name}/${job.stage}@${job.key}`;
}

export interface JobContext {
  registry: KindRegistry;
  /** This process's outputs folder. */
  outputs: string;
  io: StepIO;
  signal: AbortSignal;
  initBackend?: InitBackend;
}

/** Checks the job against this process's store and code, then runs it under its key's lock. */
export async function runStageJob(job: StageJob, ctx: JobContext): Promise<StageResult> {
  const here = `${hostname()} (tfpipe ${tfpipeVersion}, outputs ${ctx.outputs})`;
  if (job.format !== JOB_FORMAT)
    throw new JobRefused(
      `job format ${String(job.format)} is not ${JOB_FORMAT}: the coordinator runs tfpipe ${job.tfpipe}, this is ${here}`,
    );
  if (job.store) {
    const mine = await readStoreId(ctx.outputs);
    if (mine !== job.store.id) {
      throw new JobRefused(
        `${describeJob(job)} belongs to the outputs folder ${job.store.root} on ${job.store.host} (store ${job.store.id}), ` +
          `but ${here} ${mine ? `is store ${mine}` : 'has no store id'}: this worker does not see the coordinator's outputs folder`,
      );
    }
  }
  let pipeline: ResolvedPipeline;
  try {
    pipeline = resolvePipeline(documentSource(job.pipeline.document, job.pipeline.file, 'job'), ctx.registry, []);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    throw new JobRefused(
      `${here} cannot read the pipeline of ${describeJob(job)} (tfpipe ${job.tfpipe} wrote it): ${err.problems.map(formatProblem).join('; ')}`,
    );
  }
  const plan = await makePlan(pipeline, ctx.registry, { outputs: ctx.outputs, force: job.force ? [job.stage] : [] });
  const p = plan.stages.find((s) => s.stage.name === job.stage);
  if (!p) throw new JobRefused(`${describeJob(job)}: the pipeline has no stage "${job.stage}"`);
  if (p.key !== job.key) {
    // What differs, but never a key or content hash this runner computed: a refusal is read by
    // whoever reads the queue.
    const why = explainChange(job.inputs, { ...p.inputs, needs: job.inputs.needs, inputs: job.inputs.inputs });
    for (const n of Object.keys(job.inputs.needs))
      if (p.inputs.needs[n] !== job.inputs.needs[n]) why.push(`upstream stage "${n}" has another key here`);
    for (const i of Object.keys(job.inputs.inputs))
      if (p.inputs.inputs[i] !== job.inputs.inputs[i]) why.push(`the file of setting ${i} has other content here`);
    throw new JobRefused(
      `${describeJob(job)}: ${here} computes another key for this stage` +
        `${why.length ? ` (${why.join('; ')})` : ''}; the worker's tfpipe or stage kinds differ from the coordinator's (tfpipe ${job.tfpipe}), so it runs nothing`,
    );
  }
  const needs: Record<string, Manifest> = {};
  for (const [name, key] of Object.entries(p.inputs.needs)) {
    const v = await plan.store.verify(name, key);
    if (!v.ok)
      throw new Error(
        `${describeJob(job)} needs the result of stage "${name}" (key ${key}), which ${here} cannot use: ${v.reason}`,
      );
    needs[name] = v.manifest;
  }
  const runner = new StageRunner(ctx.initBackend, ctx.signal);
  return runner.run(plan, p, needs, ctx.io, job.requestedAt);
}
