import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { packageRoot } from '../src/paths.js';
import { tempProject } from './helpers.js';
import { noArchive, tinyPipeline } from './ml-helpers.js';

const BIN = resolve(packageRoot, 'bin/tfpipe.js');

function tfpipe(args: string[], outputs: string) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    env: { ...process.env, TFPIPE_OUTPUTS: outputs, NO_COLOR: '1' },
    encoding: 'utf8',
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const metricsOf = (dir: string) =>
  readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, number>);

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
  assert.ok(m[0].lr < m[1].lr || m[1].lr > m[2].lr, 'cosine schedule with warm-up moves the rate');
  const reference = join(p.dir, 'reference-last');
  cpSync(join(trainDir, 'last'), reference, { recursive: true });
  const lock = readFileSync(join(p.outputs, 'tiny-train', 'tfpipe.lock'), 'utf8');
  assert.match(lock, /backend: wasm/);

  // Rerun training from scratch, killed with SIGKILL early in epoch 2 (after epoch 1's state was saved).
  const child = spawn(process.execPath, [BIN, 'run', file, '--force', 'train'], {
    env: { ...process.env, TFPIPE_OUTPUTS: p.outputs, NO_COLOR: '1', TFPIPE_LOG_INTERVAL_MS: '0' },
  });
  let seen = '';
  await new Promise<void>((res) => {
    child.stdout.on('data', (d) => {
      seen += String(d);
      if (/\[train\] epoch 2\/3 · batch 1\//.test(seen)) res();
    });
    child.on('exit', () => res());
  });
  child.kill('SIGKILL');
  await new Promise((res) => child.on('exit', res));
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
    const r = spawnSync(process.execPath, [BIN, 'run', file, '--until', 'train', '--json'], {
      env: { ...process.env, TFPIPE_OUTPUTS: outputs, NO_COLOR: '1', TFPIPE_BATCH_WORKERS: workers },
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr + r.stdout);
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
