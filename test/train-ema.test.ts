// train with `ema` on, end to end on real images and the tfjs kernels: the average is what gets
// validated and checkpointed, training itself is untouched, a kill -9 resumes to the same bits,
// and without the setting nothing changes (not even the stage key).
import assert from 'node:assert/strict';
import { cpSync, readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { before, test } from 'node:test';
import { cliEnv, killedInEpoch2, tfpipe } from './cli-helpers.js';
import { tempProject } from './helpers.js';
import { metricsOf, noArchive, tinyPipeline } from '../harness/ml-helpers.js';
import { loadPipeline } from '../src/config/load.js';
import { unkeyedDefaults } from '../src/config/unkeyed-defaults.js';
import type { JsonObject } from '../src/ground/json.js';
import { packageRoot } from '../src/ground/paths.js';
import { loadRegistry } from '../src/kinds/index.js';
import { initBackend } from '../src/ml/backend.js';
import { findResume } from '../src/ml/resume.js';
import { loadCheckpoint } from '../src/ml/vit/checkpoint.js';

before(async () => {
  await initBackend('wasm', 1);
});

/** The tiny pipeline on the tfjs kernels, with `ema` (a YAML flow mapping) when given. */
const pipeline = (name: string, ema?: string) =>
  tinyPipeline(name, '', '{ backend: wasm, kernels: tfjs }').replace(
    'grad_clip_norm: 1.0\n',
    `grad_clip_norm: 1.0\n${ema ? `    ema: ${ema}\n` : ''}`,
  );

/** Everything in metrics that does not depend on the wall clock. */
const numbers = (rows: Record<string, number>[]) =>
  rows.map(({ images_per_second, seconds, elapsed_seconds, tensors, ...rest }) => rest);

const bytes = (dir: string) => readFileSync(join(dir, 'weights.bin'));

/** A checkpoint's weights in model order. */
async function weightsOf(dir: string): Promise<number[][]> {
  const m = await loadCheckpoint(dir);
  try {
    return m.variables.map((v) => [...(v.dataSync() as Float32Array)]);
  } finally {
    m.dispose();
  }
}

/** Runs a pipeline to its train stage; the train stage's folder and the log. */
function train(file: string, outputs: string, args: string[] = []) {
  const r = tfpipe(['run', file, '--until', 'train', '--json', ...args], outputs);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const doc = JSON.parse(r.stdout);
  return {
    dir: resolve(doc.stages.find((s: { name: string }) => s.name === 'train').dir as string),
    log: r.stderr + r.stdout,
  };
}

test('ema on: validation, best/ and last/ are the average; training is untouched; kill -9 resumes to the same bits', {
  skip: noArchive,
  timeout: 600_000,
}, async () => {
  const p = tempProject();
  const emaFile = p.write('ema.yaml', pipeline('tiny-ema', '{ decay: 0.9 }'));
  const on = train(emaFile, p.outputs);
  const off = train(p.write('off.yaml', pipeline('tiny-ema-off')), p.outputs);

  const result = JSON.parse(readFileSync(join(on.dir, 'result.json'), 'utf8'));
  assert.deepEqual(result.ema, { decay: 0.9, warmup: true, every_steps: 1 });
  assert.equal(JSON.parse(readFileSync(join(off.dir, 'result.json'), 'utf8')).ema, null);
  assert.match(on.log, /EMA of the weights: decay 0\.9 with warm-up, taken in after every step/);
  assert.match(on.log, /epoch 3\/3: .*val \(EMA\) loss [\d.]+ acc [\d.]+% \(trained weights: loss/);

  // The average never feeds back into training: the same steps, and the trained weights'
  // validation is what the run without the average validated.
  const mOn = metricsOf(on.dir);
  const mOff = metricsOf(off.dir);
  assert.deepEqual(
    mOn.map(({ train_loss, train_accuracy, lr, raw_val_loss, raw_val_accuracy }) => ({
      train_loss,
      train_accuracy,
      lr,
      val_loss: raw_val_loss,
      val_accuracy: raw_val_accuracy,
    })),
    mOff.map(({ train_loss, train_accuracy, lr, val_loss, val_accuracy }) => ({
      train_loss,
      train_accuracy,
      lr,
      val_loss,
      val_accuracy,
    })),
  );
  assert.ok(
    mOn.some((r) => r.val_loss !== r.raw_val_loss),
    'val_loss is the average’s, not the trained weights’',
  );
  assert.ok(!bytes(join(on.dir, 'last')).equals(bytes(join(off.dir, 'last'))), 'last/ is not the trained weights');
  // best/ is the epoch whose average validated best, and says it holds the average.
  const best = JSON.parse(readFileSync(join(on.dir, 'best', 'model.json'), 'utf8')).userDefinedMetadata;
  const top = Math.max(...mOn.map((r) => r.val_accuracy));
  assert.equal(best.val_accuracy, top);
  assert.equal(best.epoch, mOn.find((r) => r.val_accuracy === top)?.epoch);
  assert.deepEqual(best.ema, { decay: 0.9, warmup: true, every_steps: 1 });
  const reference = join(p.dir, 'reference-last');
  cpSync(join(on.dir, 'last'), reference, { recursive: true });

  // Killed early in epoch 2, after epoch 1's checkpoints and resume state were written.
  const seen = await killedInEpoch2(
    ['run', emaFile, '--until', 'train', '--force', 'train'],
    cliEnv(p.outputs, { TFPIPE_LOG_INTERVAL_MS: '0' }),
  );
  assert.match(seen, /epoch 2\/3 · batch 1\//, 'killed during epoch 2');
  const stageRoot = join(p.outputs, 'tiny-ema', 'train');
  const partial = readdirSync(stageRoot).filter((e) => e.endsWith('.partial'));
  assert.equal(partial.length, 1, 'the killed attempt left its work dir');

  // What epoch 1 left: best/ and last/ hold exactly the saved average, not the trained weights.
  const work = join(stageRoot, partial[0]);
  const saved = await findResume(work);
  assert.equal(saved?.state.epochsDone, 1);
  assert.equal(saved?.ema?.step, 5, '5 batches of 64 from 320 images');
  const average = (saved?.ema?.arrays ?? []).map((a) => [...a]);
  assert.deepEqual(await weightsOf(join(work, 'last')), average);
  assert.deepEqual(await weightsOf(join(work, 'best')), average);
  assert.notDeepEqual(await weightsOf(join(saved?.dir ?? '', 'model')), average);

  const resumed = train(emaFile, p.outputs, ['--force', 'train']);
  assert.match(resumed.log, /resuming after epoch 1 of 3/);
  assert.deepEqual(numbers(metricsOf(resumed.dir)), numbers(mOn), 'same metrics as the uninterrupted run');
  assert.ok(bytes(join(resumed.dir, 'last')).equals(bytes(reference)), 'bit-identical final average');
});

test('ema decay 0 is off: the same bits as no ema at all', { skip: noArchive, timeout: 300_000 }, () => {
  const p = tempProject();
  const zero = train(p.write('zero.yaml', pipeline('tiny-ema-zero', '{ decay: 0 }')), p.outputs);
  const off = train(p.write('off.yaml', pipeline('tiny-ema-none')), p.outputs);
  assert.deepEqual(numbers(metricsOf(zero.dir)), numbers(metricsOf(off.dir)));
  assert.ok(bytes(join(zero.dir, 'last')).equals(bytes(join(off.dir, 'last'))));
  assert.ok(bytes(join(zero.dir, 'best')).equals(bytes(join(off.dir, 'best'))));
  assert.equal(JSON.parse(readFileSync(join(zero.dir, 'result.json'), 'utf8')).ema, null);
  assert.doesNotMatch(zero.log, /EMA/);
});

test('a pipeline without ema resolves to the off default, which stays out of the stage key', async () => {
  const registry = await loadRegistry();
  const dir = join(packageRoot, 'pipelines');
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.yaml'))) {
    const trains = loadPipeline(join(dir, f), registry).stages.filter((s) => s.kind === 'train');
    assert.ok(trains.length > 0, f);
    for (const s of trains) {
      assert.deepEqual(s.settings.ema, { decay: 0, warmup: true }, `${f}: ${s.name}`);
      const schema = registry.get('train')?.schema as JsonObject;
      assert.ok(
        unkeyedDefaults(schema, s.settings).some((p) => p.join('.') === 'ema'),
        `${f}: ${s.name}: ema is left out of the key`,
      );
    }
  }
  const set = loadPipeline(join(dir, 'cifar-vit-quick.yaml'), registry, ['train.ema.decay=0.999']);
  assert.deepEqual(set.stages.find((s) => s.kind === 'train')?.settings.ema, { decay: 0.999, warmup: true });
});
