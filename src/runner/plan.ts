// For each stage: its key, whether a trusted result exists, and why it would (re)run.
import { existsSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import type { ResolvedPipeline, ResolvedStage } from '../config/load.js';
import { localPathSettings, withoutSettings } from '../config/path-settings.js';
import { dottedPath } from '../config/problems.js';
import { unkeyedDefaults } from '../config/unkeyed-defaults.js';
import { InputHasher } from '../cache/input-hashes.js';
import { explainChange, stageKey, type KeyInputs } from '../cache/keys.js';
import { readLock, type LockFile } from '../cache/lockfile.js';
import { outputsRoot } from '../cache/outputs.js';
import { ArtefactStore, type Manifest } from '../cache/store.js';
import { whyNotReused } from '../cache/upstream.js';
import type { AnyKind, KindRegistry } from '../stage-kind/registry.js';

export type StageState = 'cached' | 'stale' | 'missing';

export interface PlannedStage {
  stage: ResolvedStage;
  impl: AnyKind;
  inputs: KeyInputs;
  key: string;
  /** Whether a trusted, up-to-date result exists for the key (before --force). */
  state: StageState;
  reasons: string[];
  /** Present when state is cached. */
  manifest?: Manifest;
  /** Named with --force: runs even when cached. */
  forced: boolean;
  /**
   * Upstream stages that will run before this one although it is cached: it is reused only if
   * they reproduce the outputs it read.
   */
  pendingUpstream: string[];
}

export interface Plan {
  pipeline: ResolvedPipeline;
  store: ArtefactStore;
  /** The folder of this run's tfpipe.lock: the pipeline's, or a sweep variant's own. */
  lockDir: string;
  lock: LockFile;
  stages: PlannedStage[];
  /** Problems that did not stop planning, e.g. a damaged lock entry that was ignored. */
  warnings: string[];
}

export interface PlanOptions {
  outputs?: string;
  force?: readonly string[];
  /** Where tfpipe.lock is read and written; default outputs/<pipeline>/. */
  lockDir?: string;
  /**
   * Save the input hashes computed (outputs/.cache/input-hashes.json) for the next plan. Only a
   * run does: `status` and `--dry-run` write nothing.
   */
  rememberHashes?: boolean;
}

/** Local input paths are written relative to the pipeline file. */
export function resolveInput(pipeline: ResolvedPipeline, p: string): string {
  return isAbsolute(p) ? p : resolve(pipeline.dir, p);
}

export async function makePlan(
  pipeline: ResolvedPipeline,
  registry: KindRegistry,
  opts: PlanOptions = {},
): Promise<Plan> {
  const root = opts.outputs ?? outputsRoot(pipeline);
  const store = new ArtefactStore(root, pipeline.name);
  const lockDir = opts.lockDir ?? store.pipelineDir;
  const { lock, warnings, damaged } = readLock(lockDir, pipeline.name);
  const hasher = new InputHasher(join(root, '.cache'));
  const planned = new Map<string, PlannedStage>();
  for (const stage of pipeline.stages) {
    const impl = registry.get(stage.kind);
    if (!impl) throw new Error(`unknown stage kind ${stage.kind}`); // validation already rejects this
    const { inputs, spelled } = await keyInputs(pipeline, stage, impl, planned, hasher);
    const key = stageKey(inputs);
    const unrecorded =
      damaged.includes(stage.name) || damaged.includes('*')
        ? 'no usable record of an earlier run (its tfpipe.lock entry is damaged)'
        : 'never ran';
    const judged = await judge(store, lock, stage, key, inputs, spelled, planned, unrecorded);
    if (judged.state !== 'cached') {
      const partial = await partialWork(store, stage.name, key, impl);
      // "never ran" is not the whole truth when an attempt got half-way.
      if (partial.length) judged.reasons = [...judged.reasons.filter((r) => r !== 'never ran'), ...partial];
    }
    planned.set(stage.name, { stage, impl, inputs, key, forced: opts.force?.includes(stage.name) ?? false, ...judged });
  }
  if (opts.rememberHashes) await hasher.save();
  return { pipeline, store, lockDir, lock, stages: [...planned.values()], warnings };
}

/** What the key hashes. A local path setting enters by its content hash, not its spelling. */
async function keyInputs(
  pipeline: ResolvedPipeline,
  stage: ResolvedStage,
  impl: AnyKind,
  planned: Map<string, PlannedStage>,
  hasher: InputHasher,
) {
  const paths = localPathSettings(impl.schema, stage.settings);
  const inputs: Record<string, string> = {};
  const spelled: Record<string, string> = {};
  for (const p of paths) {
    const name = dottedPath(p.path);
    inputs[name] = await hasher.hash(resolveInput(pipeline, p.value));
    spelled[name] = p.value;
  }
  const key: KeyInputs = {
    kind: stage.kind,
    version: impl.version,
    settings: withoutSettings(stage.settings, [
      ...paths.map((p) => p.path),
      ...unkeyedDefaults(impl.schema, stage.settings),
    ]),
    needs: Object.fromEntries(stage.needs.map((n) => [n, (planned.get(n) as PlannedStage).key])),
    inputs,
    seed: pipeline.seed,
  };
  return { inputs: key, spelled };
}

/** What an interrupted attempt left in the work dir, as the kind describes it ("resumable from epoch 4 of 10"). */
async function partialWork(store: ArtefactStore, stage: string, key: string, impl: AnyKind): Promise<string[]> {
  const dir = store.workDir(stage, key);
  if (!impl.describePartial || !existsSync(dir)) return [];
  try {
    const said = await impl.describePartial(dir);
    return said ? [said] : [];
  } catch {
    return []; // a half-written scratch dir: the kind's run() will judge it
  }
}

type Judged = Pick<PlannedStage, 'state' | 'reasons' | 'manifest' | 'pendingUpstream'>;

async function judge(
  store: ArtefactStore,
  lock: LockFile,
  stage: ResolvedStage,
  key: string,
  inputs: KeyInputs,
  spelled: Record<string, string>,
  planned: Map<string, PlannedStage>,
  unrecorded: string,
): Promise<Judged> {
  const last = lock.stages[stage.name];
  const verified = await store.verify(stage.name, key);
  if (verified.ok) {
    // Cached for its key; still stale if an upstream stage now holds other outputs than it read.
    // An upstream stage that will run first is judged by the walk, once it has.
    const upstream: Record<string, Manifest> = {};
    const pendingUpstream: string[] = [];
    for (const n of stage.needs) {
      const u = planned.get(n) as PlannedStage;
      if (u.manifest && !u.forced && u.pendingUpstream.length === 0) upstream[n] = u.manifest;
      else pendingUpstream.push(n);
    }
    const changed = whyNotReused(verified.manifest, upstream);
    if (changed.length) return { state: 'stale', reasons: changed, pendingUpstream: [] };
    const reasons =
      last && last.key !== key
        ? [
            `reusing the earlier result of key ${key} (run cache); since the last run: ${explainChange(last, inputs, spelled).join('; ')}`,
          ]
        : [];
    for (const n of pendingUpstream)
      reasons.push(`upstream stage "${n}" runs first; kept if its outputs come out unchanged`);
    return { state: 'cached', reasons, manifest: verified.manifest, pendingUpstream };
  }
  if (verified.existed) return { state: 'missing', reasons: [verified.reason], pendingUpstream: [] };
  if (!last) return { state: 'missing', reasons: [unrecorded], pendingUpstream: [] };
  if (last.key === key)
    return { state: 'missing', reasons: [`the artefacts of key ${key} were deleted`], pendingUpstream: [] };
  const reasons = explainChange(last, inputs, spelled);
  return {
    state: 'stale',
    reasons: reasons.length ? reasons : [`key changed: ${last.key} → ${key}`],
    pendingUpstream: [],
  };
}
