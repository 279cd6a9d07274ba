// The contract between the runner and a stage kind. A stage kind is one module exporting a
// `StageKind` plus one JSON Schema in schemas/<kind>.schema.json; src/kinds/index.ts lists them.
// A kind module is imported by every command (status, dag, kinds), so it loads its heavy
// dependencies (TensorFlow.js, sharp, vega, the ml/ modules) inside run(), not at its top.
import type { EpochMetrics } from '../ground/epoch-metrics.js';
import type { JsonObject } from '../ground/json.js';
import type { ProgressUpdate } from '../ground/progress.js';
import type { RunSummary } from '../ground/run-summary.js';
import type { ReportEvaluation } from '../render/report-html.js';

// The shared vocabulary a kind's code uses, from the ground floor.
export type { JsonObject, JsonValue } from '../ground/json.js';
export type { ProgressUpdate } from '../ground/progress.js';
export type { RunState, RunSummary } from '../ground/run-summary.js';

/** Pipeline-wide execution settings. Not part of any stage key: they change how, not what. */
export interface RuntimeSettings {
  backend: 'auto' | 'tensorflow-gpu' | 'tensorflow' | 'wasm' | 'cpu';
  /**
   * Threads of the wasm backend and the native kernels; 0 = let tfpipe choose (every core, or cores /
   * jobs). It changes how fast the native kernels run, never what they compute: they give the same
   * bits on any thread count.
   */
  threads: number;
  /** Who runs the ViT: the CUDA kernels on the GPU, the native CPU kernels, the tfjs ops, or auto (a working GPU, else the fastest here). */
  kernels?: 'auto' | 'cuda' | 'native' | 'tfjs';
}

/** What the runner hands a stage about one stage it needs. Read-only: never write here. */
export interface UpstreamArtefacts {
  name: string;
  kind: string;
  key: string;
  /** Directory holding the upstream stage's finished, verified artefacts. */
  dir: string;
  /** The upstream stage's resolved settings (defaults applied). */
  settings: JsonObject;
  /** What the upstream stage's run() returned (also stored as result.json). */
  result: JsonObject;
  /** What the upstream stage's kind declares it writes (StageKind.writes). */
  writes?: Artefacts;
}

export interface StageContext<S = JsonObject> {
  pipeline: string;
  /** Stage name in the pipeline file. */
  name: string;
  kind: string;
  key: string;
  /** Resolved settings, defaults applied, validated against the kind's schema. */
  settings: S;
  seed: number;
  runtime: RuntimeSettings;
  /**
   * Where the stage writes its artefacts. It is a work directory that only becomes trusted once
   * run() resolves and the runner writes the manifest and renames it into place. If the kind sets
   * `resumable`, an interrupted earlier attempt's files for the same key are left here, so the
   * stage can pick up (e.g. from its last checkpoint); otherwise it starts empty.
   */
  outDir: string;
  /** Stages listed in `needs`, by stage name. */
  inputs: Record<string, UpstreamArtefacts>;
  /** Root of this pipeline's outputs (outputs/<pipeline>); for caches shared across keys. */
  pipelineDir: string;
  /** Absolute path of a local input named in settings (relative paths are relative to the pipeline file). */
  resolveInput(path: string): string;
  /** Root for caches shared across pipelines (e.g. downloads): outputs/.cache */
  cacheDir: string;
  /** The TensorFlow.js backend in use, once initialised for a kind with `usesTensorflow`. */
  backend?: string;
  progress(update: ProgressUpdate): void;
  log(message: string): void;
  /** Aborted on Ctrl-C; long loops should check it between batches. */
  signal: AbortSignal;
}

/** A picture a kind writes into its stage folder, and how the report presents it. */
export interface Picture {
  /** File name in the stage folder. Where a .png was not written, an .svg of the same name stands in. */
  file: string;
  title: string;
  caption?: string;
}

/** Report content besides pictures, read from a stage's artefacts; the report page draws each. */
export interface SectionContent {
  /** Plain-text paragraphs shown above the pictures. */
  notes?: string[];
  /** A per-epoch training metrics table. */
  epochs?: EpochMetrics[];
  /** Test accuracy (the page's headline), per-class accuracy and confusion matrix. */
  evaluation?: Omit<ReportEvaluation, 'stage'>;
}

/** A section of the run report that a kind's stages fill. */
export interface ReportPart<S = JsonObject> {
  /** Section id; the parts of every stage that name it share one section (e.g. two rollout stages). */
  section: string;
  title: string;
  /** Place on the page, smaller first (evaluation 5, data 10 ... rollout 60). */
  order: number;
  /** Pictures in the order shown; one a stage did not write is left out. */
  pictures?: Picture[];
  /** Pixels per CSS pixel the pictures were rasterised at (shown at CSS size); 1 if absent. */
  pictureScale?(settings: S): number;
  /** Read further content from the stage's finished folder. */
  content?(stage: UpstreamArtefacts): Promise<SectionContent>;
}

/**
 * What a kind writes into its stage folder, declared once: stages that read these files import
 * the names from the writer's module, the report composes its sections from `report`, and
 * `tfpipe kinds` lists them.
 */
export interface Artefacts<S = JsonObject> {
  /** Files (folders end in '/') other stages or people read, with what each holds. Pictures are in `report`. */
  files: Record<string, string>;
  /** The report sections this kind's stages fill. */
  report?: ReportPart<S>[];
}

export interface StageKind<S = JsonObject> {
  kind: string;
  /** Bump when a change to this module changes its results: every key of this kind changes. */
  version: number;
  /** One-line description for `tfpipe kinds` and the docs. */
  description: string;
  /**
   * The kind's JSON Schema (schemas/<kind>.schema.json). A setting marked `"x-path": true` names a
   * local file or folder: its content hash, not its spelling, enters the stage key.
   */
  schema: JsonObject;
  /** Keep an interrupted attempt's work directory for the next attempt of the same key. */
  resumable?: boolean;
  /**
   * For `status`: what an interrupted attempt left in its work dir, in a few words (e.g.
   * "resumable from epoch 4 of 10"), or undefined when nothing usable. Resumable kinds only.
   */
  describePartial?(workDir: string): Promise<string | undefined>;
  /** Initialise the TensorFlow.js backend (runtime.backend) before this kind runs. */
  usesTensorflow?: boolean;
  /**
   * Called after every run in which this stage is up to date (ran or cached), with its finished
   * artefact directory; e.g. the report kind publishes outputs/<pipeline>/report.html from it.
   */
  publish?(stageDir: string, pipelineDir: string, run: RunSummary): Promise<void>;
  /** Upstream kinds this stage requires among its `needs` (checked before anything runs). */
  requires?: string[];
  /** What it writes; a kind that declares pictures here appears in the report. */
  writes?: Artefacts<S>;
  /**
   * The numeric fields of its result that sum up a run (e.g. test_accuracy): `tfpipe runs` and
   * the sweep page show them. Where several stages of a run declare one, the later stage's wins.
   */
  headline?: readonly string[];
  run(ctx: StageContext<S>): Promise<JsonObject>;
}

/** Find the single upstream stage of a given kind, with a clear error if absent. */
export function upstreamOfKind(ctx: StageContext<unknown>, kind: string): UpstreamArtefacts {
  const found = Object.values(ctx.inputs).filter((u) => u.kind === kind);
  if (found.length === 0) {
    throw new Error(`stage "${ctx.name}" needs a stage of kind "${kind}" in its needs`);
  }
  if (found.length > 1) {
    throw new Error(`stage "${ctx.name}" has ${found.length} "${kind}" stages in its needs; expected one`);
  }
  return found[0];
}

/** Like upstreamOfKind, but returns undefined when no such stage is among the needs. */
export function optionalUpstreamOfKind(ctx: StageContext<unknown>, kind: string): UpstreamArtefacts | undefined {
  return Object.values(ctx.inputs).find((u) => u.kind === kind);
}
