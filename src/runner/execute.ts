// Run a pipeline: plan, take the run lock, run what is not cached in order, seal and record.
import { join } from 'node:path';
import type { ResolvedPipeline } from '../config/load.js';
import { writeLock } from '../cache/lockfile.js';
import type { KindRegistry } from '../stages/registry.js';
import type { JsonObject, RunSummary, StageContext, UpstreamArtefacts } from '../stages/types.js';
import { acquireRunLock } from '../cache/run-lock.js';
import { ancestorsAndSelf } from '../graph/dag.js';
import { appendRun, headlineMetrics } from './history.js';
import { makePlan, outputsRoot, resolveInput, type Plan, type PlannedStage } from './plan.js';
import type { Step, StepReporter } from './steps.js';

export interface RunOptions {
  force?: string[];
  until?: string;
  reporter: StepReporter;
  signal?: AbortSignal;
  outputs?: string;
  /** Initialises the TensorFlow.js backend; injected so the core never imports tfjs itself. */
  initBackend?: (runtime: ResolvedPipeline['runtime']) => Promise<{ name: string; detail: string }>;
}

export class Aborted extends Error {
  constructor() {
    super('interrupted');
  }
}

export async function runPipeline(pipeline: ResolvedPipeline, registry: KindRegistry, opts: RunOptions): Promise<RunSummary> {
  const root = opts.outputs ?? outputsRoot();
  const startedAt = new Date().toISOString();
  const t0 = Date.now();
  const first = await makePlan(pipeline, registry, root);
  const release = await acquireRunLock(first.store.pipelineDir, (m) => opts.reporter.info(m));
  try {
    // Plan again under the lock: a run we waited for may have produced what we need.
    const plan = await makePlan(pipeline, registry, root);
    const summary = await execute(plan, opts, startedAt);
    await appendRun(plan.store.pipelineDir, {
      started_at: startedAt,
      seconds: (Date.now() - t0) / 1000,
      seed: pipeline.seed,
      settings: Object.fromEntries(pipeline.stages.map((s) => [s.name, s.settings])),
      stages: summary.stages,
      metrics: headlineMetrics(await stageResults(plan, summary)),
    });
    for (const s of plan.stages) {
      const done = summary.stages.find((x) => x.name === s.stage.name);
      if (s.impl.publish && done && (done.state === 'ran' || done.state === 'cached')) {
        await s.impl.publish(done.dir, plan.store.pipelineDir, summary);
      }
    }
    return summary;
  } finally {
    await release();
  }
}

async function stageResults(plan: Plan, summary: RunSummary): Promise<JsonObject[]> {
  const out: JsonObject[] = [];
  for (const s of summary.stages) {
    if (s.state !== 'ran' && s.state !== 'cached') continue;
    const m = await plan.store.readManifest(s.name, s.key);
    if (m) out.push(m.result);
  }
  return out;
}

async function execute(plan: Plan, opts: RunOptions, startedAt: string): Promise<RunSummary> {
  const { pipeline, store, lock } = plan;
  const selected = opts.until ? ancestorsAndSelf(pipeline.stages, opts.until) : undefined;
  const forced = new Set(opts.force ?? []);
  const summary: RunSummary = { pipeline: pipeline.name, startedAt, stages: [] };
  const done = new Map<string, UpstreamArtefacts>();
  const failed = new Set<string>();
  let backend: { name: string; detail: string } | undefined;
  const controller = new AbortController();
  opts.signal?.addEventListener('abort', () => controller.abort(), { once: true });

  const record = (p: PlannedStage, state: RunSummary['stages'][number]['state'], seconds: number, error?: string) => {
    summary.stages.push({ name: p.stage.name, kind: p.stage.kind, state, key: p.key, seconds, dir: store.stageDir(p.stage.name, p.key), ...(error ? { error } : {}) });
  };
  const upstream = (p: PlannedStage, result: JsonObject): UpstreamArtefacts => ({
    name: p.stage.name, kind: p.stage.kind, key: p.key, dir: store.stageDir(p.stage.name, p.key), settings: p.stage.settings, result, writes: p.impl.writes,
  });

  const steps: Step[] = plan.stages
    .filter((p) => !selected || selected.has(p.stage.name))
    .map((p): Step => ({
      name: p.stage.name,
      kind: p.stage.kind,
      reasons: () => (forced.has(p.stage.name) ? ['forced with --force'] : p.reasons),
      skip: () => {
        if (controller.signal.aborted) return { reason: 'interrupted', cached: false };
        const bad = p.stage.needs.find((n) => failed.has(n));
        if (bad) {
          failed.add(p.stage.name);
          record(p, 'skipped', 0, `upstream stage ${bad} did not finish`);
          return { reason: `upstream stage "${bad}" did not finish`, cached: false };
        }
        if (p.state === 'cached' && p.manifest && !forced.has(p.stage.name)) {
          done.set(p.stage.name, upstream(p, p.manifest.result));
          record(p, 'cached', 0);
          lock.stages[p.stage.name] = lockEntry(p, p.manifest.files, p.manifest.backend, p.manifest.seconds, p.manifest.finishedAt);
          return { reason: `key ${p.key}`, cached: true };
        }
        return undefined;
      },
      exec: async (io) => {
        const t = Date.now();
        try {
          if (p.impl.usesTensorflow && !backend && opts.initBackend) {
            backend = await opts.initBackend(pipeline.runtime);
            summary.backend = backend.name;
            io.log(`backend: ${backend.name} (${backend.detail})`);
          }
          const outDir = await store.prepareWorkDir(p.stage.name, p.key, p.impl.resumable === true);
          const ctx: StageContext<never> = {
            pipeline: pipeline.name,
            name: p.stage.name,
            kind: p.stage.kind,
            key: p.key,
            settings: p.stage.settings as never,
            seed: pipeline.seed,
            runtime: pipeline.runtime,
            outDir,
            inputs: Object.fromEntries(p.stage.needs.map((n) => [n, done.get(n) as UpstreamArtefacts])),
            pipelineDir: store.pipelineDir,
            cacheDir: join(store.outputsRoot, '.cache'),
            resolveInput: (path) => resolveInput(pipeline, path),
            backend: backend?.name,
            progress: (u) => io.progress(u),
            log: (m) => io.log(m),
            signal: controller.signal,
          };
          const result = await p.impl.run(ctx);
          if (controller.signal.aborted) throw new Aborted();
          const seconds = (Date.now() - t) / 1000;
          const manifest = await store.commit(p.stage.name, p.key, {
            pipeline: pipeline.name, stage: p.stage.name, key: p.key, inputs: p.inputs, result,
            backend: p.impl.usesTensorflow ? backend?.name : undefined, seconds, finishedAt: new Date().toISOString(),
          });
          done.set(p.stage.name, upstream(p, result));
          record(p, 'ran', seconds);
          lock.stages[p.stage.name] = lockEntry(p, manifest.files, manifest.backend, seconds, manifest.finishedAt);
          await writeLock(store.pipelineDir, lock);
        } catch (err) {
          failed.add(p.stage.name);
          record(p, 'failed', (Date.now() - t) / 1000, (err as Error).message);
          throw err;
        }
      },
    }));
  await opts.reporter.runSteps(steps);
  await writeLock(store.pipelineDir, lock);
  if (controller.signal.aborted) throw new Aborted();
  return summary;
}

function lockEntry(p: PlannedStage, files: Record<string, { sha256: string }>, backend: string | undefined, seconds: number, finished: string) {
  return {
    ...p.inputs,
    key: p.key,
    outs: Object.fromEntries(Object.entries(files).map(([f, r]) => [f, r.sha256])),
    ...(backend ? { backend } : {}),
    seconds,
    finished_at: finished,
  };
}
