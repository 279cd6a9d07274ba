// Issue 19: the flagship on a CPU. Before the long training starts, the run states how long it
// will take here (from the kernel timing); far beyond an hour without a GPU it names the CPU
// pipeline and train.max_minutes, and trains anyway; status and --dry-run show the same estimate.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { BIN, tfpipe } from './cli-helpers.js';
import { test } from 'node:test';
import { CPU_PIPELINE, estimateTraining, FAR_BEYOND_SECONDS } from '../src/kinds/train-estimate.js';
import { packageRoot } from '../src/ground/paths.js';
import { tempProject } from './helpers.js';
import { ARCHIVE, noArchive } from '../harness/ml-helpers.js';

const FLAGSHIP = resolve(packageRoot, 'pipelines/cifar-vit.yaml');

test('the estimate: epochs x (train images + validation at 3x) / speed, capped by max_minutes; CPU advice only far beyond an hour off a GPU', () => {
  const cpu = { images_per_second: 86, kernels: 'native/avx512@wasm', on_gpu: false };
  const base = { stage: 'train', images: 45_000, valImages: 5_000, epochs: 200, maxMinutes: 0, speed: cpu };
  // The machine: 86 img/s on the flagship.
  const slow = estimateTraining(base);
  const perEpoch = 45_000 / 86 + 5_000 / (3 * 86);
  assert.ok(Math.abs(slow.seconds - 200 * perEpoch) < 1e-6);
  // The progress bar said ~29 h for the training alone; with validation, 30 h 8 min.
  assert.ok(slow.seconds > 29 * 3600 && slow.seconds < 31 * 3600, `${slow.seconds} s`);
  assert.match(
    slow.lines[0],
    /^estimated time on this machine: 30h08m for 200 epochs of 45,000 images \(\+5,000 validated\) at ~86 img\/s \(native\/avx512@wasm, from the kernel timing\)$/,
  );
  assert.equal(slow.lines.length, 2);
  assert.ok(slow.lines[1].includes(CPU_PIPELINE), slow.lines[1]);
  assert.match(slow.lines[1], /--set train\.max_minutes=60/);
  // On a GPU: the estimate, no advice.
  assert.equal(estimateTraining({ ...base, speed: { ...cpu, on_gpu: true } }).lines.length, 1);
  // A budget caps it and says how many epochs fit: no advice, the run already ends within it.
  const capped = estimateTraining({ ...base, maxMinutes: 48 });
  assert.equal(capped.seconds, 48 * 60);
  assert.equal(capped.epochs, Math.floor((48 * 60) / perEpoch));
  assert.match(capped.lines[0], new RegExp(`max_minutes 48 lets about ${capped.epochs} of them run$`));
  assert.equal(capped.lines.length, 1);
  // Just under the threshold: no advice; just over: advice.
  const at = (seconds: number) =>
    estimateTraining({ ...base, epochs: 1, valImages: 0, images: 86 * seconds }).lines.length;
  assert.equal(at(FAR_BEYOND_SECONDS - 1), 1);
  assert.equal(at(FAR_BEYOND_SECONDS + 1), 2);
  // A resumed run counts only the epochs left.
  const resumed = estimateTraining({ ...base, done: 150 });
  assert.ok(Math.abs(resumed.seconds - 50 * perEpoch) < 1e-6);
  assert.match(resumed.lines[0], / for the 50 remaining of 200 epochs /);
});

test('status on a machine where nothing was timed says there is no estimate yet', () => {
  const p = tempProject();
  const st = tfpipe(['status', FLAGSHIP, '--json'], p.outputs);
  assert.equal(st.code, 0, st.stderr);
  const train = JSON.parse(st.stdout).stages.find((s: { name: string }) => s.name === 'train');
  assert.equal(train.estimate, null);
  assert.match(
    tfpipe(['status', FLAGSHIP], p.outputs).stdout,
    /train .*\n(.*\n)*\s+~ no time estimate yet: this model has not been timed on this machine/,
  );
});

test('the flagship on this machine: the run states its estimate before training; status and --dry-run show the same', {
  skip: noArchive,
  timeout: 300_000,
}, async () => {
  const p = tempProject();
  // The flagship's model, batch and epochs on a small data subset: the estimate is for that subset.
  const small = ['data.limit_train=1000', 'data.limit_val=100', 'data.limit_test=100'].flatMap((s) => ['--set', s]);
  const child = spawn(process.execPath, [BIN, 'run', FLAGSHIP, '--set', `data.source=${ARCHIVE}`, ...small], {
    env: { ...process.env, TFPIPE_OUTPUTS: p.outputs, NO_COLOR: '1', TFPIPE_LOG_INTERVAL_MS: '0' },
  });
  let log = '';
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  await new Promise<void>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`no training progress within 4 minutes:\n${log}`)), 240_000);
    const onData = (d: Buffer) => {
      log += String(d);
      // Interrupted once training has shown progress: it trains anyway, as asked.
      if (/\[train\] epoch 1\/200 · batch \d+/.test(log)) {
        clearTimeout(timer);
        res();
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', () => {
      clearTimeout(timer);
      res();
    });
  });
  child.kill('SIGINT');
  assert.equal(await exited, 130, log);
  const said =
    /\[train\] estimated time on this machine: (\S+) for 200 epochs of 1,000 images \(\+100 validated\) at ~(\d+) img\/s \(([^,]+), from the kernel timing\)/.exec(
      log,
    );
  assert.ok(said, log);
  assert.ok(log.indexOf(said[0]) < log.search(/\[train\] epoch 1\/200 · batch/), 'stated before the first batch');
  const kernels = said[3];
  // The whole flagship (45,000 + 5,000 images) at the speed the run measured and remembered.
  const full = ['--set', `data.source=${ARCHIVE}`];
  const st = tfpipe(['status', FLAGSHIP, ...full, '--json'], p.outputs);
  assert.equal(st.code, 0, st.stderr);
  const estimate = JSON.parse(st.stdout).stages.find((s: { name: string }) => s.name === 'train').estimate;
  assert.ok(estimate, st.stdout);
  assert.equal(estimate.kernels, kernels);
  assert.equal(estimate.images_per_second.toFixed(0), said[2]);
  const expected = 200 * (45_000 / estimate.images_per_second + 5_000 / (3 * estimate.images_per_second));
  assert.ok(Math.abs(estimate.seconds - expected) <= 1, `${estimate.seconds} vs ${expected}`);
  // The advice, exactly when it is due (the kernels here are CPU kernels unless tensorflow-gpu ran).
  const due = expected > FAR_BEYOND_SECONDS && !kernels.endsWith('@tensorflow-gpu');
  assert.equal(estimate.lines.length, due ? 2 : 1, estimate.lines.join('\n'));
  const text = tfpipe(['status', FLAGSHIP, ...full], p.outputs).stdout;
  const dry = tfpipe(['run', FLAGSHIP, ...full, '--dry-run'], p.outputs).stdout;
  for (const line of estimate.lines) {
    assert.ok(text.includes(`~ ${line}`), text);
    assert.ok(dry.includes(`~ ${line}`), dry);
  }
  for (const advice of estimate.lines.slice(1))
    assert.match(advice, /pipelines\/cifar-vit-cpu-hour\.yaml .*--set train\.max_minutes=60/);
});
