// Runs one stage: the key's lock, backend if the kind needs it, a work dir, the kind's run(), then
// the sealed result.
import { rm, rmdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { ResolvedPipeline } from '../config/load.js';
import type { ArtefactStore, Manifest } from '../cache/store.js';
import { produced, whyNotReused } from '../cache/upstream.js';
import type { StageContext, UpstreamArtefacts } from '../stage-kind/types.js';
import type { JsonObject } from '../ground/json.js';
import { Aborted } from '../ground/errors.js';
import type { Plan, PlannedStage } from './plan.js';
import { resolveInput } from './plan.js';
import { acquireLock } from '../cache/run-lock.js';
import type { StepIO } from './steps.js';

export type InitBackend = (runtime: ResolvedPipeline['runtime']) => Promise<{ name: string; detail: string }>;

/** What running a stage gave: its sealed result, and whether another process had just made it. */
export interface StageResult {
  manifest: Manifest;
  /** Another process finished this key while this one waited for its lock; nothing ran here. */
  reused: boolean;
}

/** A holder on another machine that has not refreshed its stage lock for this long counts as gone. */
const STAGE_LOCK_REMOTE_STALE_MS = 120_000;

/** outputs/.locks/<pipeline>.<stage>.<key>.lock: beside the store, not in the pipeline's folder. */
export function stageLockPath(store: ArtefactStore, stage: string, key: string): string {
  return join(store.outputsRoot, '.locks', `${store.pipeline}.${stage}.${key}.lock`);
}

export class StageRunner {
  private backend: { name: string; detail: string } | undefined;
  private readonly controller = new AbortController();

  constructor(
    private readonly initBackend?: InitBackend,
    signal?: AbortSignal,
  ) {
    if (signal?.aborted) this.controller.abort();
    signal?.addEventListener('abort', () => this.controller.abort(), { once: true });
  }

  get interrupted(): boolean {
    return this.controller.signal.aborted;
  }

  /** The TensorFlow.js backend, once a stage needed it. */
  get backendName(): string | undefined {
    return this.backend?.name;
  }

  /**
   * Runs `p` of `plan` on the finished results of its needs. `requestedAt` (ms): a result of this key
   * finished after it, by another process while this one waited, satisfies even a forced run.
   */
  async run(
    plan: Plan,
    p: PlannedStage,
    needs: Record<string, Manifest>,
    io: StepIO,
    requestedAt = Date.now(),
  ): Promise<StageResult> {
    const { store } = plan;
    // One process at a time works on a key: whoever runs the instance (this process, a -j child, a
    // worker's child on another machine) holds it while it touches <key>.partial/. It is per key,
    // not per pipeline, so a sweep's jobs run side by side and a duplicate of one job waits.
    const release = await acquireLock(stageLockPath(store, p.stage.name, p.key), {
      onWait: (m) => io.log(m),
      signal: this.controller.signal,
      remoteStaleMs: STAGE_LOCK_REMOTE_STALE_MS,
    }).catch((err: unknown) => {
      throw this.interrupted ? new Aborted() : err;
    });
    try {
      const done = await store.verify(p.stage.name, p.key);
      if (
        done.ok &&
        whyNotReused(done.manifest, needs).length === 0 &&
        (!p.forced || Date.parse(done.manifest.finishedAt) >= requestedAt)
      ) {
        io.log(`another process finished key ${p.key} meanwhile; using its result`);
        return { manifest: done.manifest, reused: true };
      }
      return { manifest: await this.runLocked(plan, p, needs, io), reused: false };
    } finally {
      await release();
    }
  }

  private async runLocked(plan: Plan, p: PlannedStage, needs: Record<string, Manifest>, io: StepIO): Promise<Manifest> {
    const { pipeline, store } = plan;
    const t = Date.now();
    if (p.impl.usesTensorflow && !this.backend && this.initBackend) {
      this.backend = await this.initBackend(pipeline.runtime);
      io.log(`backend: ${this.backend.name} (${this.backend.detail})`);
    }
    const ctx: StageContext<never> = {
      pipeline: pipeline.name,
      name: p.stage.name,
      kind: p.stage.kind,
      key: p.key,
      settings: p.stage.settings as never,
      seed: pipeline.seed,
      runtime: pipeline.runtime,
      outDir: await store.prepareWorkDir(p.stage.name, p.key, p.impl.resumable === true),
      inputs: Object.fromEntries(Object.entries(needs).map(([n, m]) => [n, upstreamOf(plan, n, m)])),
      pipelineDir: store.pipelineDir,
      cacheDir: join(store.outputsRoot, '.cache'),
      resolveInput: (path) => resolveInput(pipeline, path),
      backend: this.backend?.name,
      progress: (u) => io.progress(u),
      log: (m) => io.log(m),
      signal: this.controller.signal,
    };
    let result: JsonObject;
    try {
      result = await p.impl.run(ctx);
      if (this.interrupted) throw new Aborted();
    } catch (err) {
      // Only a resumable kind has a use for what a failed attempt left; nothing else keeps it.
      if (!p.impl.resumable) {
        await rm(ctx.outDir, { recursive: true, force: true });
        await rmdir(dirname(ctx.outDir)).catch(() => {}); // the stage's folder, if nothing else is in it
      }
      // A system error that names no file (a write by a library: "ENOSPC: no space left on
      // device, write") at least names the folder the stage was writing in.
      const e = err as NodeJS.ErrnoException;
      if (e instanceof Error && typeof e.code === 'string' && typeof e.syscall === 'string' && !e.path)
        e.message = `${e.message} (${p.stage.name} was writing in ${ctx.outDir})`;
      throw err;
    }
    return store.commit(p.stage.name, p.key, {
      pipeline: pipeline.name,
      stage: p.stage.name,
      key: p.key,
      inputs: p.inputs,
      upstreamOutputs: Object.fromEntries(Object.entries(needs).map(([n, m]) => [n, produced(m).digest])),
      result,
      backend: p.impl.usesTensorflow ? this.backend?.name : undefined,
      seconds: (Date.now() - t) / 1000,
      finishedAt: new Date().toISOString(),
    });
  }
}

function upstreamOf(plan: Plan, name: string, m: Manifest): UpstreamArtefacts {
  const u = plan.stages.find((s) => s.stage.name === name) as PlannedStage;
  return {
    name,
    kind: u.stage.kind,
    key: m.key,
    dir: plan.store.stageDir(name, m.key),
    settings: u.stage.settings,
    result: m.result,
    writes: u.impl.writes,
  };
}
