import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, readFileSync, readdirSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { killedInEpoch2, tfpipe as cliRun } from './cli-helpers.js';
import { test } from 'node:test';
import { nativeAvailability } from '../src/ml/vit/native.js';
import { packageRoot } from '../src/ground/paths.js';
import { tempProject } from './helpers.js';
import { metricsOf, noArchive, tinyPipeline } from '../harness/ml-helpers.js';

const BIN = resolve(packageRoot, 'bin/tfpipe.js');

function tfpipe(args: string[], outputs: string) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    env: { ...process.env, TFPIPE_OUTPUTS: outputs, NO_COLOR: '1' },
    encoding: 'utf8',
    timeout: 300_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Everything in metrics that does not depend on the wall clock. */
const numbers = (rows: Record<string, number>[]) =>
  rows.map(({ epoch, train_loss, train_accuracy, val_loss, val_accuracy, lr }) => ({
    epoch,
    train_loss,
    train_accuracy,
    val_loss,
    val_accuracy,
    lr,
  }));

const weights = (dir: string) => {
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.bin'))
    .sort();
  return Buffer.concat(files.map((f) => readFileSync(join(dir, f))));
};

test('training: learns, no tensor leak, deterministic, and resumes after kill -9 to the same weights', {
  skip: noArchive,
  timeout: 600_000,
}, async () => {
  const p = tempProject();
  const file = p.write('tiny.yaml', tinyPipeline('tiny-train'));
  const first = tfpipe(['run', file, '--json'], p.outputs);
  assert.equal(first.code, 0, first.stderr + first.stdout);
  const doc = JSON.parse(first.stdout);
  const trainDir = resolve(doc.stages.find((s: { name: string }) => s.name === 'train').dir);
  const m = metricsOf(trainDir);
  assert.equal(m.length, 3);
  assert.ok(m[2].train_loss < m[0].train_loss, `loss fell: ${m.map((r) => r.train_loss)}`);
  assert.ok(
    m.every((r) => r.tensors === m[0].tensors),
    `live tensors flat across epochs: ${m.map((r) => r.tensors)}`,
  );
  // Cosine with one warm-up epoch over 3, lr 0.003, min_lr 0: metrics record the rate of each
  // epoch's last batch (5 batches of 64 from 320 images, so progress e + 4/5). Closed forms, not the
  // schedule code: linear warm-up, then 0.5 * lr * (1 + cos(pi * t)) with t over the 2 later epochs.
  const expectedLr = [
    0.003 * (0.8 + 1e-3),
    0.0015 * (1 + Math.cos(Math.PI * 0.4)),
    0.0015 * (1 + Math.cos(Math.PI * 0.9)),
  ];
  for (const [i, r] of m.entries())
    assert.ok(Math.abs(r.lr - expectedLr[i]) < 1e-9, `epoch ${i + 1} lr ${r.lr}, expected ${expectedLr[i]}`);
  const reference = join(p.dir, 'reference-last');
  cpSync(join(trainDir, 'last'), reference, { recursive: true });
  const lock = readFileSync(join(p.outputs, 'tiny-train', 'tfpipe.lock'), 'utf8');
  assert.match(lock, /backend: wasm/);

  // Rerun training from scratch, killed with SIGKILL early in epoch 2 (after epoch 1's state was saved).
  const seen = await killedInEpoch2(['run', file, '--force', 'train'], {
    ...process.env,
    TFPIPE_OUTPUTS: p.outputs,
    NO_COLOR: '1',
    TFPIPE_LOG_INTERVAL_MS: '0',
  });
  assert.match(seen, /epoch 2\/3 · batch 1\//, 'killed during epoch 2');
  const partial = readdirSync(join(p.outputs, 'tiny-train', 'train')).filter((e) => e.endsWith('.partial'));
  assert.equal(partial.length, 1, 'the killed attempt left its work dir, untrusted');

  const resumed = tfpipe(['run', file, '--force', 'train', '--json'], p.outputs);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr + resumed.stdout, /resuming after epoch 1 of 3/);
  assert.deepEqual(numbers(metricsOf(trainDir)), numbers(m), 'same metrics as the uninterrupted run');
  assert.ok(weights(join(trainDir, 'last')).equals(weights(reference)), 'bit-identical final weights');
  assert.deepEqual(
    readdirSync(join(p.outputs, 'tiny-train', 'train')).filter((e) => e.endsWith('.partial')),
    [],
  );
});

test('batches made ahead by worker threads train exactly as batches made on the main thread (RandAugment, erasing, label smoothing)', {
  skip: noArchive,
}, () => {
  const p = tempProject();
  // The flagship's augmentation, so that every random op runs in the workers.
  const yaml = tinyPipeline('tiny-prefetch')
    .replace(
      /ops:\n(\s+- .*\n)+/,
      `ops:
      - { op: random_crop, size: 32, padding: 4 }
      - { op: random_horizontal_flip, p: 0.5 }
      - { op: rand_augment, num_ops: 2, magnitude: 9 }
      - { op: normalize, from: data }
      - { op: random_erasing, p: 0.25 }
`,
    )
    .replace('epochs: 3', 'epochs: 2');
  assert.match(yaml, /rand_augment/);
  const file = p.write('tiny.yaml', yaml);
  const run = (workers: string, outputs: string) => {
    const r = cliRun(['run', file, '--until', 'train', '--json'], outputs, { env: { TFPIPE_BATCH_WORKERS: workers } });
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const doc = JSON.parse(r.stdout);
    return { dir: resolve(doc.stages.find((s: { name: string }) => s.name === 'train').dir), log: r.stderr + r.stdout };
  };
  const main = run('0', join(p.dir, 'main'));
  const ahead = run('2', join(p.dir, 'ahead'));
  assert.match(main.log, /batches: made on the main thread/);
  assert.match(ahead.log, /batches: made ahead by 2 worker thread\(s\)/);
  assert.deepEqual(numbers(metricsOf(ahead.dir)), numbers(metricsOf(main.dir)));
  assert.ok(weights(join(ahead.dir, 'last')).equals(weights(join(main.dir, 'last'))), 'bit-identical final weights');
});

/** Family and model of this CPU as Linux reports them (cpuid leaf 1), on x86-64 Linux. */
function cpuFamilyModel(): { family: string; model: string } | undefined {
  if (process.arch !== 'x64' || !existsSync('/proc/cpuinfo')) return undefined;
  const text = readFileSync('/proc/cpuinfo', 'utf8');
  const field = (name: string) => new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm').exec(text)?.[1].trim();
  const family = field('cpu family');
  const model = field('model');
  return family && model ? { family, model } : undefined;
}

test('max_minutes bounds a real run: epochs re-planned to what fits, the schedule stretched over them; result.json names kernels, ISA and CPU', {
  skip: noArchive,
  timeout: 300_000,
}, () => {
  const p = tempProject();
  const native = nativeAvailability().isa;
  const runtime = `{ backend: wasm, kernels: ${native ? 'native' : 'tfjs'} }`;
  // 10,000 epochs (3.8 million images) take far longer than the 3 s budget on any machine.
  const EPOCHS = 10_000;
  const file = p.write(
    'budget.yaml',
    tinyPipeline('tiny-budget', '', runtime).replace('epochs: 3', `epochs: ${EPOCHS}\n    max_minutes: 0.05`),
  );
  const r = tfpipe(['run', file, '--until', 'train', '--json'], p.outputs);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const dir = resolve(JSON.parse(r.stdout).stages.find((s: { name: string }) => s.name === 'train').dir);
  const result = JSON.parse(readFileSync(join(dir, 'result.json'), 'utf8'));
  const m = metricsOf(dir);
  assert.ok(
    result.planned_epochs >= 1 && result.planned_epochs < EPOCHS,
    `planned ${result.planned_epochs} of ${EPOCHS}`,
  );
  assert.equal(result.epochs_done, result.planned_epochs);
  assert.equal(m.length, result.planned_epochs);
  // Over budget by at most the one epoch that was running when it ran out.
  const slowest = Math.max(...m.map((x) => x.seconds));
  assert.ok(result.seconds <= 3 + slowest, `${result.seconds} s against a 3 s budget (slowest epoch ${slowest} s)`);
  assert.match(
    r.stderr + r.stdout,
    /max_minutes 0\.05: [\d.]+ min used, epochs take ~\d+ s, so \d+ epochs fit; the schedule now spans \d+/,
  );
  // The schedule follows the plan: each epoch ran under the epoch count its log line names
  // ("epoch k/T"), and its rate (of its last batch: 5 batches, so progress k - 1 + 4/5) is the
  // closed-form warm-up + cosine over T epochs, not over 10,000; the last plan is the recorded one.
  const plans = [...(r.stderr + r.stdout).matchAll(/\[train\] epoch (\d+)\/(\d+): train loss/g)].map((x) =>
    Number(x[2]),
  );
  assert.equal(plans.length, m.length);
  assert.ok(plans[plans.length - 1] >= result.planned_epochs && plans.every((t) => t <= EPOCHS));
  const cosine = (progress: number, total: number) =>
    progress < 1
      ? 0.003 * (progress + 1e-3)
      : 0.0015 * (1 + Math.cos(Math.PI * Math.min(1, (progress - 1) / (total - 1))));
  m.forEach((row, e) => {
    const want = cosine(e + 0.8, plans[e]);
    assert.ok(Math.abs(row.lr - want) < 1e-9, `epoch ${e + 1} of ${plans[e]}: rate ${row.lr}, expected ${want}`);
  });
  // What ran, on what: the kernels, the ISA variant and the CPU.
  assert.equal(result.kernels, native ? `native/${native}` : 'tfjs');
  assert.equal(result.isa, native ?? null);
  assert.equal(result.backend, 'wasm');
  const fm = cpuFamilyModel();
  if (native && fm) assert.match(result.cpu, new RegExp(`\\(family ${fm.family}, model ${fm.model}\\)$`));
  else assert.equal(result.cpu, cpus()[0]?.model ?? 'unknown CPU');
  assert.match(
    r.stderr + r.stdout,
    new RegExp(`kernels: ${native ? `native kernels, ${native} variant` : 'tfjs ops'}`),
  );
});
