// Runs one stage: backend if the kind needs it, a work dir, the kind's run(), then the sealed result.
import { rm, rmdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { ResolvedPipeline } from '../config/load.js';
import type { Manifest } from '../cache/store.js';
import { produced } from '../cache/upstream.js';
import type { StageContext, UpstreamArtefacts } from '../stages/types.js';
import type { Plan, PlannedStage } from './plan.js';
import { resolveInput } from './plan.js';
import type { StepIO } from './steps.js';

export type InitBackend = (runtime: ResolvedPipeline['runtime']) => Promise<{ name: string; detail: string }>;

export class Aborted extends Error {
  constructor(message = 'interrupted') {
    super(message);
  }
}

export class StageRunner {
  private backend: { name: string; detail: string } | undefined;
  private readonly controller = new AbortController();

  constructor(private readonly plan: Plan, private readonly initBackend?: InitBackend, signal?: AbortSignal) {
    signal?.addEventListener('abort', () => this.controller.abort(), { once: true });
  }

  get interrupted(): boolean {
    return this.controller.signal.aborted;
  }

  /** The TensorFlow.js backend, once a stage needed it. */
  get backendName(): string | undefined {
    return this.backend?.name;
  }

  /** Runs `p` on the finished results of its needs; resolves with its sealed manifest. */
  async run(p: PlannedStage, needs: Record<string, Manifest>, io: StepIO): Promise<Manifest> {
    const { pipeline, store } = this.plan;
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
      inputs: Object.fromEntries(Object.entries(needs).map(([n, m]) => [n, this.upstream(n, m)])),
      pipelineDir: store.pipelineDir,
      cacheDir: join(store.outputsRoot, '.cache'),
      resolveInput: (path) => resolveInput(pipeline, path),
      backend: this.backend?.name,
      progress: (u) => io.progress(u),
      log: (m) => io.log(m),
      signal: this.controller.signal,
    };
    let result;
    try {
      result = await p.impl.run(ctx);
      if (this.interrupted) throw new Aborted();
    } catch (err) {
      // Only a resumable kind has a use for what a failed attempt left; nothing else keeps it.
      if (!p.impl.resumable) {
        await rm(ctx.outDir, { recursive: true, force: true });
        await rmdir(dirname(ctx.outDir)).catch(() => {}); // the stage's folder, if nothing else is in it
      }
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

  private upstream(name: string, m: Manifest): UpstreamArtefacts {
    const u = this.plan.stages.find((s) => s.stage.name === name) as PlannedStage;
    return { name, kind: u.stage.kind, key: m.key, dir: this.plan.store.stageDir(name, m.key), settings: u.stage.settings, result: m.result, writes: u.impl.writes };
  }
}
