// kind: train — minibatch training with checkpoints every epoch and exact resume.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../cache/atomic.js';
import { loadSplit } from '../ml/dataset.js';
import { formatMetricsJsonl, EPOCH_METRICS_FILE, readMetrics, type EpochMetrics } from '../ground/epoch-metrics.js';
import { emaEnabled, WeightEma } from '../ml/ema.js';
import { findResume, resumeState, saveResume, type TrainState } from '../ml/resume.js';
import { deriveSeed } from '../ml/rng.js';
import { learningRate } from '../ml/schedule.js';
import { readSchema } from '../ground/paths.js';
import { stageKernels } from './shared/kernels.js';
import type { AugmentationSettings, TrainSettings, VitSettings } from './settings.js';
import { estimateTraining, onGpu, readSpeed, rememberSpeed, speedFile } from './train-estimate.js';
import { upstreamData } from './shared/upstream-data.js';
import { upstreamOfKind, type StageContext, type StageKind } from '../stage-kind/types.js';
import { isObject, type JsonObject } from '../ground/json.js';
import { MODEL_DIR } from './vit.js';
import type { Vit } from '../ml/vit/model.js';

/** The checkpoint folders (tf.io Layers models): the best epoch by validation accuracy, and the last. */
export type Checkpoint = 'best' | 'last';

export function checkpointDir(trainStageDir: string, which: Checkpoint): string {
  return join(trainStageDir, which);
}

const yieldToEventLoop = () => new Promise<void>((r) => setImmediate(r));

/** The slower of the last epoch and the mean of the last three: a cautious guess at the next one. */
function recentEpochSeconds(state: TrainState): number {
  const recent = state.metrics.slice(-3).map((m) => m.seconds);
  return Math.max(recent[recent.length - 1], recent.reduce((a, b) => a + b, 0) / recent.length);
}

/**
 * Whether last/ and the resume state are due again: at least ten times as long has passed since
 * the last write as that write took (times in ms; the first write is always due).
 */
export function writeDue(last: { at: number; took: number }, now: number): boolean {
  return now - last.at >= 10 * last.took;
}

/**
 * With a time budget, the epoch count is re-planned after every epoch from how long epochs take
 * now (the machine may get busier), so the schedule always ends when the budget does: never more
 * than `epochs`, never fewer than those already done.
 */
export function plannedEpochs(maxEpochs: number, state: TrainState, budgetSeconds: number): number {
  const fit = Math.floor((budgetSeconds - state.elapsedSeconds) / recentEpochSeconds(state));
  return Math.max(state.epochsDone, Math.min(maxEpochs, state.epochsDone + Math.max(0, fit)));
}

async function train(ctx: StageContext<TrainSettings>): Promise<JsonObject> {
  const [
    tf,
    { evaluateSplit },
    { createTrainer },
    { describeKernels },
    { openCheckpoint, saveCheckpoint },
    { vitWithWeights },
    { cpuModel, nativeThreads },
    { gpuRecord },
    { candidateLabel, timeCandidate },
  ] = await Promise.all([
    import('@tensorflow/tfjs'),
    import('../ml/evaluation.js'),
    import('../ml/vit/trainer.js'),
    import('../ml/vit/index.js'),
    import('../ml/vit/checkpoint.js'),
    import('../ml/vit/model.js'),
    import('../ml/vit/native.js'),
    import('../ml/vit/gpu.js'),
    import('../ml/vit/choose-kernels.js'),
  ]);
  const s = ctx.settings;
  const bs = s.batch_size;
  const vit = upstreamOfKind(ctx, 'vit');
  const { dir, info, augmenter } = await upstreamData(ctx);
  const [trainSplit, valSplit] = await Promise.all([loadSplit(dir, 'train'), loadSplit(dir, 'val')]);

  const resume = await findResume(ctx.outDir);
  const modelDir = resume ? join(resume.dir, 'model') : join(vit.dir, MODEL_DIR);
  // model.json is read (and its config checked) once; the kernels are chosen before the weights
  // load, so that they load onto the backend the chosen path runs on.
  const checkpoint = await openCheckpoint(modelDir);
  const cfg = checkpoint.config;
  const decision = await stageKernels(ctx, cfg, s.batch_size, 'train', s.precision);
  const { kernels, backend } = decision;
  // Only the GPU has lower precisions; the CPU paths compute in fp32 whatever the setting says.
  const precision = kernels.path === 'cuda' ? kernels.precision : 'fp32';
  if (precision !== s.precision)
    ctx.log(`precision: ${s.precision} asked, but ${describeKernels(kernels)} computes in fp32, so this run is fp32`);

  // Before the long work: how long it will take here, from the kernel timing (a lone path, which
  // auto did not need to time, is timed the same way once and remembered).
  const label = candidateLabel(decision);
  const speedAt = speedFile(ctx.cacheDir, {
    model: vit.settings as unknown as VitSettings,
    batch: s.batch_size,
    threads: nativeThreads(),
    runtime: ctx.runtime,
  });
  const remembered = await readSpeed(speedAt);
  const ips =
    decision.measured?.[label] ??
    (remembered?.kernels === label ? remembered.images_per_second : undefined) ??
    (await timeCandidate(decision, { cfg, batch: s.batch_size, purpose: 'train' }));
  const speed = { images_per_second: ips, kernels: label, on_gpu: onGpu(backend, kernels.path) };
  await rememberSpeed(speedAt, speed);
  const model = await checkpoint.load();
  const trainer = createTrainer(model, kernels, s.optimizer, { batch: bs });
  const state: TrainState = resume?.state ?? {
    epochsDone: 0,
    plannedEpochs: s.epochs,
    bestEpoch: 0,
    bestValAccuracy: -1,
    elapsedSeconds: 0,
    metrics: [],
  };
  if (resume) {
    trainer.setState(resume.optimizer);
    ctx.log(`resuming after epoch ${state.epochsDone} of ${state.plannedEpochs}`);
  }
  // The EMA starts from the weights training starts from; a resumed one where it was saved.
  const emaSettings = emaEnabled(s.ema);
  let ema: WeightEma | undefined;
  if (emaSettings) {
    if (resume && !resume.ema) throw new Error(`${resume.dir} holds no EMA of the weights, though ema is on`);
    ema = resume?.ema
      ? new WeightEma(emaSettings, resume.ema.arrays, resume.ema.step)
      : new WeightEma(emaSettings, trainer.weights());
    const every =
      trainer.weightsEvery === 1 ? 'after every step' : `every ${trainer.weightsEvery} steps and at every epoch's end`;
    ctx.log(
      `EMA of the weights: decay ${emaSettings.decay}${emaSettings.warmup ? ' with warm-up' : ''}, taken in ${every}; validation, best/ and last/ use it`,
    );
  }
  const emaRecord = emaSettings && { ...emaSettings, every_steps: trainer.weightsEvery };
  for (const line of estimateTraining({
    stage: ctx.name,
    images: trainSplit.count,
    valImages: valSplit.count,
    epochs: state.plannedEpochs,
    done: state.epochsDone,
    maxMinutes: s.max_minutes,
    speed,
  }).lines)
    ctx.log(line);

  const batches = Math.ceil(trainSplit.count / bs);
  // A GPU step would wait for augmentation done between steps on this thread: batches are made
  // ahead on the other cores instead.
  const { batchSource, batchWorkers } = await import('../ml/batches/source.js');
  const workers = batchWorkers(kernels.path === 'cuda' && !kernels.host);
  const augmentation = upstreamOfKind(ctx, 'augmentation').settings as unknown as AugmentationSettings;
  const source = batchSource({
    split: trainSplit,
    seed: ctx.seed,
    batchSize: bs,
    shape: {
      imageSize: info.imageSize,
      channels: info.channels,
      classes: info.classes.length,
      labelSmoothing: s.label_smoothing,
    },
    augmenter,
    ops: augmentation.ops,
    stats: info,
    firstEpoch: state.epochsDone,
    epochs: () => state.plannedEpochs,
    workers,
  });
  ctx.log(workers > 0 ? `batches: made ahead by ${workers} worker thread(s)` : 'batches: made on the main thread');
  let lastWrite = { at: 0, took: 0 }; // of last/ and the resume state (performance.now() ms)
  let averaged: Vit | undefined; // the EMA as a model, at an epoch's end
  try {
    for (let epoch = state.epochsDone; epoch < state.plannedEpochs; epoch++) {
      const t0 = Date.now();
      let lossSum = 0;
      let correct = 0;
      let seen = 0;
      let lr = 0;
      // Where the epoch's time goes, for the log: cutting and augmenting batches runs on the tfjs
      // backend, model steps and the optimizer on the kernels chosen above.
      const time = { batches: 0, model: 0, optimizer: 0, ema: 0 };
      const timed = <T>(part: keyof typeof time, f: () => T): T => {
        const start = performance.now();
        try {
          return f();
        } finally {
          time[part] += performance.now() - start;
        }
      };
      for (let b = 0; b < batches; b++) {
        if (ctx.signal.aborted) throw new Error('interrupted');
        lr = learningRate(s.schedule, s.optimizer.lr, epoch + b / batches, state.plannedEpochs);
        const start = performance.now();
        const { x, y, n } = await source.next(epoch, b);
        time.batches += performance.now() - start;
        const r = timed('model', () =>
          trainer.gradients(x, y, { seed: deriveSeed(ctx.seed, 'dropout', epoch, b), gradClipNorm: s.grad_clip_norm }),
        );
        timed('optimizer', () => trainer.update(lr));
        // One update per batch, so this is the optimizer's step count, resumed or not.
        const step = epoch * batches + b + 1;
        if (ema && step - ema.step >= trainer.weightsEvery) timed('ema', () => ema.advance(trainer.weights(), step));
        tf.dispose([x, y]);
        lossSum += r.loss * n;
        correct += r.correct;
        seen += n;
        const elapsed = (Date.now() - t0) / 1000;
        const ips = seen / Math.max(elapsed, 1e-9);
        const remaining =
          (trainSplit.count - seen) / ips + (state.plannedEpochs - epoch - 1) * (trainSplit.count / ips);
        ctx.progress({
          epoch: epoch + 1,
          epochs: state.plannedEpochs,
          batch: b + 1,
          batches,
          loss: lossSum / seen,
          accuracy: correct / seen,
          imagesPerSecond: ips,
          etaSeconds: remaining,
        });
        await yieldToEventLoop();
      }
      const trainSeconds = (Date.now() - t0) / 1000;
      // The model's variables are read from here on (validation, checkpoints): bring them up to
      // date where the trainer keeps the weights elsewhere (the GPU).
      trainer.syncModel();
      const steps = (epoch + 1) * batches;
      if (ema && ema.step < steps) timed('ema', () => ema.advance(trainer.weights(), steps));
      // With the EMA on, validation and both checkpoints are of the average (a model of its own,
      // for this epoch's end); the trained weights are validated too, for comparison.
      averaged = ema && vitWithWeights(cfg, ema.weights);
      const shown = averaged ?? model;
      const valStart = performance.now();
      const validate = (m: Vit) =>
        valSplit.count > 0
          ? evaluateSplit(m, augmenter, valSplit, {
              batchSize: s.eval_batch_size,
              imageSize: info.imageSize,
              channels: info.channels,
              kernels,
            })
          : undefined;
      const val = validate(shown);
      const raw = averaged && validate(model);
      const seconds = (Date.now() - t0) / 1000;
      const valSeconds = (performance.now() - valStart) / 1000;
      state.elapsedSeconds += seconds;
      const m: EpochMetrics = {
        epoch: epoch + 1,
        train_loss: lossSum / seen,
        train_accuracy: correct / seen,
        val_loss: val?.loss ?? null,
        val_accuracy: val?.accuracy ?? null,
        ...(raw ? { raw_val_loss: raw.loss, raw_val_accuracy: raw.accuracy } : {}),
        lr,
        images_per_second: seen / trainSeconds,
        seconds,
        elapsed_seconds: state.elapsedSeconds,
        tensors: tf.memory().numTensors,
      };
      state.metrics.push(m);
      state.epochsDone = epoch + 1;
      ctx.log(
        `epoch ${m.epoch}/${state.plannedEpochs}: train loss ${m.train_loss.toFixed(4)} acc ${(m.train_accuracy * 100).toFixed(2)}%` +
          (val
            ? `, val${ema ? ' (EMA)' : ''} loss ${val.loss.toFixed(4)} acc ${(val.accuracy * 100).toFixed(2)}%`
            : '') +
          (raw ? ` (trained weights: loss ${raw.loss.toFixed(4)} acc ${(raw.accuracy * 100).toFixed(2)}%)` : '') +
          `, ${m.images_per_second.toFixed(0)} img/s, ${seconds.toFixed(1)} s` +
          ` (batches ${(time.batches / 1000).toFixed(1)} s, model steps ${(time.model / 1000).toFixed(1)} s, optimizer ${(time.optimizer / 1000).toFixed(1)} s` +
          (ema ? `, EMA ${(time.ema / 1000).toFixed(1)} s` : '') +
          `, validation ${valSeconds.toFixed(1)} s)`,
      );
      // Without a validation split the trained weights' running training accuracy stands in.
      const score = val ? val.accuracy : m.train_accuracy;
      const tag = emaRecord ? { ema: emaRecord } : {};
      if (score > state.bestValAccuracy) {
        state.bestValAccuracy = score;
        state.bestEpoch = m.epoch;
        // saveCheckpoint writes beside the folder and swaps it into place itself.
        await saveCheckpoint(shown, checkpointDir(ctx.outDir, 'best'), { epoch: m.epoch, val_accuracy: score, ...tag });
      }
      if (s.max_minutes > 0) {
        const planned = plannedEpochs(s.epochs, state, s.max_minutes * 60);
        if (planned !== state.plannedEpochs) {
          ctx.log(
            `max_minutes ${s.max_minutes}: ${(state.elapsedSeconds / 60).toFixed(1)} min used, epochs take ~${recentEpochSeconds(state).toFixed(0)} s, so ${planned} epochs fit; the schedule now spans ${planned}`,
          );
          state.plannedEpochs = planned;
        }
      }
      await writeFileAtomic(join(ctx.outDir, EPOCH_METRICS_FILE), formatMetricsJsonl(state.metrics));
      // last/ and the resume state take about a second for the flagship, a third of a GPU epoch:
      // they are written once at least ten times what the last write took has passed (so at most
      // ~10% of the run), and after the last epoch. A crash resumes from a few epochs back at most,
      // to the same numbers.
      if (state.epochsDone >= state.plannedEpochs || writeDue(lastWrite, performance.now())) {
        const w0 = performance.now();
        await saveCheckpoint(shown, checkpointDir(ctx.outDir, 'last'), { epoch: m.epoch, ...tag });
        await saveResume(
          ctx.outDir,
          state,
          trainer.getState(),
          (d) => saveCheckpoint(model, d),
          ema && { step: ema.step, arrays: ema.weights },
        );
        lastWrite = { at: performance.now(), took: performance.now() - w0 };
      }
      averaged?.dispose();
      averaged = undefined;
    }
  } finally {
    averaged?.dispose();
    await source.close();
    trainer.dispose();
    model.dispose();
  }
  const last = state.metrics[state.metrics.length - 1];
  return {
    epochs_done: state.epochsDone,
    planned_epochs: state.plannedEpochs,
    best_epoch: state.bestEpoch,
    best_val_accuracy: state.bestValAccuracy,
    final_train_accuracy: last.train_accuracy,
    seconds: state.elapsedSeconds,
    images_per_second: state.metrics.reduce((a, x) => a + x.images_per_second, 0) / state.metrics.length,
    backend,
    kernels: describeKernels(kernels),
    isa: kernels.path === 'native' ? kernels.isa : null,
    cpu: cpuModel(),
    gpu: kernels.path === 'cuda' ? gpuRecord() : null,
    precision,
    ema: emaRecord ?? null,
    ...(precision !== s.precision
      ? { precision_note: `${s.precision} asked; ${describeKernels(kernels)} computes in fp32` }
      : {}),
  };
}

export const stage: StageKind<TrainSettings> = {
  kind: 'train',
  version: 1,
  description: 'Train the ViT with checkpoints every epoch; resumes after an interruption.',
  schema: readSchema('train'),
  usesTensorflow: true,
  resumable: true,
  async describePartial(workDir) {
    const state = await resumeState(workDir);
    if (!state) return undefined;
    const { epochsDone: done, plannedEpochs: of } = state;
    return done < of
      ? `resumable from epoch ${done + 1} of ${of} (an interrupted attempt finished ${done})`
      : `resumable: an interrupted attempt finished all ${of} epochs`;
  },
  requires: ['cifar10', 'augmentation', 'vit'],
  headline: ['best_val_accuracy', 'epochs_done', 'images_per_second'],
  writes: {
    files: {
      [EPOCH_METRICS_FILE]:
        'one JSON object per epoch: train/val loss and accuracy (with ema on: val of the EMA, raw_val of the trained weights), lr, img/s, seconds, elapsed seconds, live tensors (src/ground/epoch-metrics.ts)',
      'best/':
        'checkpoint of the epoch with the best validation accuracy, a tf.io Layers model (with ema on: the EMA of the weights, chosen by its accuracy)',
      'last/': 'checkpoint after the last epoch, a tf.io Layers model (with ema on: the EMA of the weights)',
    },
    report: [
      {
        section: 'metrics',
        title: 'Training metrics',
        order: 35,
        content: async (u) => ({
          ...(existsSync(join(u.dir, EPOCH_METRICS_FILE)) ? { epochs: await readMetrics(u.dir) } : {}),
          ...(isObject(u.result.ema)
            ? {
                notes: [
                  `${u.name}: validation accuracy and loss, best/ and last/ are of an EMA of the weights (decay ${u.result.ema.decay}${u.result.ema.warmup ? ', with warm-up' : ''}); raw_val_accuracy in ${EPOCH_METRICS_FILE} is the trained weights'.`,
                ],
              }
            : {}),
        }),
      },
    ],
  },
  run: train,
};
