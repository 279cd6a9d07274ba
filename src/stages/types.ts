// The contract between the runner and a stage kind. A stage kind is one module exporting a
// `StageKind` plus one JSON Schema in schemas/<kind>.schema.json; registry.ts lists them.

export type JsonValue = string | number | boolean | null | JsonValue[] | { [k: string]: JsonValue };
export type JsonObject = { [k: string]: JsonValue };

/** Pipeline-wide execution settings. Not part of any stage key: they change how, not what. */
export interface RuntimeSettings {
  backend: 'auto' | 'tensorflow-gpu' | 'tensorflow' | 'wasm' | 'cpu';
  /** wasm threads; 0 = let tfpipe choose. */
  threads: number;
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
}

/** Structured live progress; the runner formats it for a TTY or as plain log lines. */
export interface ProgressUpdate {
  /** Free text shown when nothing else fits, e.g. "extracting data_batch_3.bin". */
  message?: string;
  epoch?: number;
  epochs?: number;
  batch?: number;
  batches?: number;
  loss?: number;
  accuracy?: number;
  imagesPerSecond?: number;
  /** Seconds left for this stage, if the stage can tell. */
  etaSeconds?: number;
  /** 0..1 for byte/item counts (downloads, extraction). */
  fraction?: number;
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
  run(ctx: StageContext<S>): Promise<JsonObject>;
}

export type RunState = 'ran' | 'cached' | 'failed' | 'skipped';

/** What `tfpipe run --json` prints and what publish() hooks receive. */
export interface RunSummary {
  pipeline: string;
  startedAt: string;
  backend?: string;
  stages: { name: string; kind: string; state: RunState; key: string; seconds: number; dir: string; error?: string }[];
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
