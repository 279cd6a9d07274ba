// ViT checkpoints as standard tfjs Layers-model artefacts: <dir>/model.json (topology of custom
// layers + weights manifest + the ViT config in userDefinedMetadata) and <dir>/weights.bin.
//
// Loading as a plain tfjs model (predicts the same eval-mode logits as the Vit):
//   import * as tf from '@tensorflow/tfjs';
//   import { registerVitLayers } from 'tfpipe/dist/src/ml/vit/checkpoint.js';
//   registerVitLayers();                      // layer classes + a file:// router if none exists
//   const m = await tf.loadLayersModel('file:///abs/path/model.json');
//   m.predict(images /* [B, 32, 32, 3], normalised */);
// Loading for training/evaluation inside tfpipe: loadCheckpoint(dir) -> Vit.
import { mkdir, readFile, rename, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join, basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { completeConfig, type FullVitConfig, validateConfig, type VitConfig } from './config.js';
import { buildVitLayersModel, registerLayerClasses } from './layers.js';
import { Vit } from './model.js';
import { writeFile } from '../../cache/atomic.js';

const MODEL_JSON = 'model.json';
const WEIGHTS_BIN = 'weights.bin';

/** A tf.io handler reading/writing model.json + weights.bin in a directory (no tfjs-node needed). */
export function fileSystemHandler(dir: string): Required<Pick<tf.io.IOHandler, 'save' | 'load'>> {
  return {
    async save(artifacts: tf.io.ModelArtifacts): Promise<tf.io.SaveResult> {
      const weightData = artifacts.weightData
        ? tf.io.CompositeArrayBuffer.join(artifacts.weightData)
        : new ArrayBuffer(0);
      const modelJson: tf.io.ModelJSON = {
        modelTopology: artifacts.modelTopology as object,
        format: artifacts.format,
        generatedBy: artifacts.generatedBy,
        convertedBy: artifacts.convertedBy ?? null,
        weightsManifest: [{ paths: [`./${WEIGHTS_BIN}`], weights: artifacts.weightSpecs ?? [] }],
      };
      if (artifacts.userDefinedMetadata) modelJson.userDefinedMetadata = artifacts.userDefinedMetadata;
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, WEIGHTS_BIN), Buffer.from(weightData));
      await writeFile(join(dir, MODEL_JSON), JSON.stringify(modelJson));
      return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
    },
    async load(): Promise<tf.io.ModelArtifacts> {
      return artifactsOf(dir, JSON.parse(await readFile(join(dir, MODEL_JSON), 'utf8')) as tf.io.ModelJSON);
    },
  };
}

/** The artefacts of a model.json already read, with the weights it lists read from `dir`. */
function artifactsOf(dir: string, json: tf.io.ModelJSON): Promise<tf.io.ModelArtifacts> {
  return tf.io.getModelArtifactsForJSON(json, async (manifest) => {
    const specs: tf.io.WeightsManifestEntry[] = [];
    const buffers: ArrayBuffer[] = [];
    for (const group of manifest) {
      specs.push(...group.weights);
      for (const p of group.paths) {
        const buf = await readFile(join(dir, p));
        buffers.push(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer);
      }
    }
    return [specs, tf.io.CompositeArrayBuffer.join(buffers)];
  });
}

let routerRegistered = false;

/**
 * Registers the ViT layer classes, and a file:// load/save router for plain @tensorflow/tfjs unless
 * one exists (tfjs-node brings its own). Afterwards tf.loadLayersModel('file://…/model.json') works.
 */
export function registerVitLayers(): void {
  registerLayerClasses();
  if (routerRegistered) return;
  routerRegistered = true;
  if (tf.io.getLoadHandlers('file:///probe/model.json').length === 0) {
    const dirOf = (url: string | string[]): string | null => {
      const u = Array.isArray(url) ? url[0] : url;
      if (!u.startsWith('file://')) return null;
      const path = fileURLToPath(u);
      return basename(path).endsWith('.json') ? dirname(path) : path;
    };
    const router = (url: string | string[]): tf.io.IOHandler => {
      const d = dirOf(url);
      return (d ? fileSystemHandler(d) : null) as tf.io.IOHandler;
    };
    tf.io.registerLoadRouter(router);
    tf.io.registerSaveRouter(router);
  }
}

/** Writes the model (and `extra` into model.json's userDefinedMetadata) to dir, atomically. */
export async function saveCheckpoint(model: Vit, dir: string, extra?: object): Promise<void> {
  const layers = buildVitLayersModel(model.config);
  try {
    const byName = new Map(model.names.map((n, i) => [n, model.variables[i]]));
    layers.setWeights(
      layers.weights.map((w) => {
        const v = byName.get(w.originalName);
        if (!v) throw new Error(`internal: no ViT parameter for layer weight ${w.originalName}`);
        return v;
      }),
    );
    const tmp = `${dir}.tmp-${process.pid}`;
    await rm(tmp, { recursive: true, force: true });
    try {
      await layers.save(
        tf.io.withSaveHandler(async (artifacts) =>
          fileSystemHandler(tmp).save({
            ...artifacts,
            userDefinedMetadata: { vit: { ...model.config }, ...(extra ?? {}) },
          }),
        ),
      );
    } catch (err) {
      // A full disk leaves a half-written weights.bin: never keep it.
      await rm(tmp, { recursive: true, force: true });
      throw err;
    }
    // Swap directories so a reader never sees a half-written checkpoint.
    const old = `${dir}.old-${process.pid}`;
    if (existsSync(dir)) await rename(dir, old);
    await rename(tmp, dir);
    await rm(old, { recursive: true, force: true });
  } finally {
    layers.dispose();
  }
}

/** A checkpoint whose model.json has been read and checked once; its weights load when asked. */
export interface OpenedCheckpoint {
  /** The ViT config, checked and filled (completeConfig). */
  config: FullVitConfig;
  /** Reads weights.bin into a trainable Vit. */
  load(): Promise<Vit>;
}

/** Reads and checks a checkpoint's model.json; the weights are read by load(). */
export async function openCheckpoint(dir: string): Promise<OpenedCheckpoint> {
  const unreadable = (err: unknown) => new Error(`${dir} holds no readable ViT checkpoint: ${(err as Error).message}`);
  let json: tf.io.ModelJSON;
  try {
    json = JSON.parse(await readFile(join(dir, MODEL_JSON), 'utf8')) as tf.io.ModelJSON;
  } catch (err) {
    throw unreadable(err);
  }
  const meta = json.userDefinedMetadata as { vit?: VitConfig } | undefined;
  if (!meta?.vit)
    throw new Error(`${join(dir, MODEL_JSON)} is not a tfpipe ViT checkpoint (no "vit" config in userDefinedMetadata)`);
  validateConfig(meta.vit);
  const config = completeConfig(meta.vit);
  return {
    config,
    async load() {
      const artifacts = await artifactsOf(dir, json).catch((err: unknown) => {
        throw unreadable(err);
      });
      if (!artifacts.weightSpecs || !artifacts.weightData) throw new Error(`${dir}: checkpoint has no weights`);
      // A truncated weights.bin would otherwise fail deep in tfjs with a shape message naming no file.
      const bytes = tf.io.CompositeArrayBuffer.join(artifacts.weightData).byteLength;
      const expected = artifacts.weightSpecs.reduce((n, w) => n + 4 * tf.util.sizeFromShape(w.shape), 0);
      if (bytes !== expected && artifacts.weightSpecs.every((w) => w.dtype === 'float32' && !w.quantization))
        throw new Error(
          `${join(dir, WEIGHTS_BIN)} has ${bytes} bytes where ${join(dir, MODEL_JSON)} lists ${expected}`,
        );
      const tensors = tf.io.decodeWeights(artifacts.weightData, artifacts.weightSpecs);
      try {
        return new Vit(config, new Map(Object.entries(tensors)));
      } finally {
        tf.dispose(tensors);
      }
    },
  };
}

/** Reads a checkpoint written by saveCheckpoint back into a trainable Vit. */
export async function loadCheckpoint(dir: string): Promise<Vit> {
  return (await openCheckpoint(dir)).load();
}

/** The extra metadata saved with a checkpoint (e.g. epoch, metrics), without loading weights. */
export async function readCheckpointMetadata(dir: string): Promise<Record<string, unknown>> {
  const json = JSON.parse(await readFile(join(dir, MODEL_JSON), 'utf8')) as tf.io.ModelJSON;
  return (json.userDefinedMetadata ?? {}) as Record<string, unknown>;
}
