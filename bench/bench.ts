// Training and inference throughput of the ViT on random CIFAR-shaped batches, through the same
// code path the train stage uses (computeGradients + Adam). Prints and appends JSON Lines to
// outputs/bench/bench.jsonl; with --peer also runs the PyTorch peer benchmark for comparison.
//   node dist/bench/bench.js [--backends wasm,cpu] [--threads 1] [--steps 8] [--models small,default] [--peer]
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend, type BackendName } from '../src/ml/backend.js';
import { createVit, computeGradients, predict, type VitConfig } from '../src/ml/vit/index.js';
import { packageRoot } from '../src/paths.js';
import { nativeStatus, setNativeEnabled } from '../src/ml/vit/native.js';

interface ModelSize {
  label: string;
  patch_size: number;
  dim: number;
  depth: number;
  heads: number;
  mlp_dim: number;
}

export const MODELS: Record<string, ModelSize> = {
  small: { label: 'small', patch_size: 4, dim: 64, depth: 4, heads: 4, mlp_dim: 128 },
  default: { label: 'default', patch_size: 4, dim: 128, depth: 6, heads: 4, mlp_dim: 256 },
};

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

function vitConfig(m: ModelSize): VitConfig {
  return { imageSize: 32, channels: 3, classes: 10, patchSize: m.patch_size, dim: m.dim, depth: m.depth, heads: m.heads, dimHead: m.dim / m.heads, mlpDim: m.mlp_dim, dropout: 0.1 };
}

/** Images per second for `steps` timed training steps after `warmup` untimed ones. */
function trainRate(cfg: VitConfig, batch: number, steps: number, warmup: number): number {
  const model = createVit(cfg, 0);
  const opt: tf.Optimizer = tf.train.adam(1e-3);
  const x = tf.randomNormal([batch, 32, 32, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
  const labels = tf.randomUniform([batch], 0, 10, 'int32', 2);
  const y = tf.oneHot(labels as tf.Tensor1D, 10).toFloat() as tf.Tensor2D;
  let start = 0;
  for (let i = 0; i < warmup + steps; i++) {
    if (i === warmup) start = performance.now();
    const { grads } = computeGradients(model, x, y, { seed: i });
    opt.applyGradients(grads);
    tf.dispose(grads);
  }
  const rate = (steps * batch) / ((performance.now() - start) / 1000);
  tf.dispose([x, labels, y]);
  opt.dispose();
  model.dispose();
  return rate;
}

function inferRate(cfg: VitConfig, batch: number, steps: number, warmup: number): number {
  const model = createVit(cfg, 0);
  const x = tf.randomNormal([batch, 32, 32, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
  let start = 0;
  for (let i = 0; i < warmup + steps; i++) {
    if (i === warmup) start = performance.now();
    const logits = predict(model, x, batch);
    logits.dataSync();
    logits.dispose();
  }
  const rate = (steps * batch) / ((performance.now() - start) / 1000);
  x.dispose();
  model.dispose();
  return rate;
}

function runPeer(m: ModelSize, threads: number, steps: number): { train_img_s: number; infer_img_s: number } | string {
  const script = join(packageRoot, '..', 'shared', 'peers', 'torch_vit_bench.py');
  const peer = process.env.TFPIPE_TORCH_PEER ?? script;
  if (!existsSync(peer)) return `peer script not found at ${peer}`;
  try {
    const out = execFileSync('/usr/bin/python3', [peer, '--patch', String(m.patch_size), '--dim', String(m.dim), '--depth', String(m.depth), '--heads', String(m.heads), '--mlp', String(m.mlp_dim), '--threads', String(threads), '--steps', String(steps)], { encoding: 'utf8' });
    const train = /train_img_s=([\d.]+)/.exec(out);
    const infer = /infer_img_s=([\d.]+)/.exec(out);
    if (!train || !infer) return `unexpected peer output: ${out}`;
    return { train_img_s: Number(train[1]), infer_img_s: Number(infer[1]) };
  } catch (err) {
    return `peer failed: ${(err as Error).message.split('\n')[0]}`;
  }
}

async function main(): Promise<void> {
  const backend = arg('backend', 'wasm') as BackendName;
  const threads = Number(arg('threads', '1'));
  const batch = Number(arg('batch', '128'));
  const models = arg('models', 'small,default').split(',').map((name) => {
    const m = MODELS[name];
    if (!m) throw new Error(`unknown model ${name}; choose from ${Object.keys(MODELS).join(', ')}`);
    return m;
  });
  const cpuTiny = backend === 'cpu';
  const steps = Number(arg('steps', cpuTiny ? '1' : '6'));
  const info = await initBackend(backend, threads);
  const outDir = join(packageRoot, 'outputs', 'bench');
  mkdirSync(outDir, { recursive: true });
  const kernels = arg('kernels', 'native,tfjs').split(',');
  for (const m of models) {
    const cfg = vitConfig(m);
    const { label, ...model } = m;
    for (const k of kernels) {
      setNativeEnabled(k === 'native');
      if (k === 'native' && !nativeStatus().active) {
        console.error(`skipping native kernels: ${nativeStatus().detail}`);
        continue;
      }
      // tfjs kernels on the large model are slow: fewer steps keep the whole run to minutes.
      const s = k === 'tfjs' && label !== 'small' ? Math.max(1, Math.floor(steps / 2)) : steps;
      const row = {
        backend: info.name,
        kernels: k,
        model,
        model_label: label,
        batch,
        threads,
        train_img_s: round(trainRate(cfg, batch, s, 1)),
        infer_img_s: round(inferRate(cfg, batch, s * 2, 1)),
      };
      const line = JSON.stringify(row);
      console.log(line);
      appendFileSync(join(outDir, 'bench.jsonl'), line + '\n');
    }
    if (process.argv.includes('--peer')) {
      const peer = runPeer(m, threads, 10);
      const peerRow = typeof peer === 'string' ? { backend: 'pytorch', model, model_label: label, batch, threads, note: peer } : { backend: 'pytorch', model, model_label: label, batch, threads, ...peer };
      const peerLine = JSON.stringify(peerRow);
      console.log(peerLine);
      appendFileSync(join(outDir, 'bench.jsonl'), peerLine + '\n');
    }
  }
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
