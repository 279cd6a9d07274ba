// Issue 10 with the real kinds: a four-variant sweep of a tiny ViT on real CIFAR-10 images, run
// one stage at a time in one process, with -j 2 in child processes, and by two BullMQ workers of
// which one is killed with -9 while it trains. All three give the same keys and bit-identical
// metrics and weights, although they run at different thread counts (sequentially on every
// core, with -j 2 one core per job): the native kernels give the same bits on any thread count.
// kernels: native, so that auto's timed choice between paths cannot differ from mode to mode.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ArtefactStore } from '../src/cache/store.js';
import { packageRoot } from '../src/ground/paths.js';
import { BIN, startTfpipe, type Running } from '../harness/cli-process.js';
import { tempProject } from './helpers.js';
import { noArchive, tinyPipeline } from '../harness/ml-helpers.js';
import { noRedis, startRedis, type RedisHandle } from '../harness/redis-server.js';

// The tiny training pipeline of the other ML tests, with evaluate and report, swept over two
// training settings (so data, augmentation and model are shared by all four variants).
const PIPELINE = tinyPipeline(
  'tiny-sweep',
  `  evaluate:
    kind: evaluate
    needs: [train, data, augmentation]
  report:
    kind: report
    needs: [data, augmentation, model, train, evaluate]
sweep:
  train.optimizer.lr: [0.003, 0.001]
  train.batch_size: [32, 64]
`,
  '{ backend: wasm, kernels: native }',
);

const VARIANTS = [
  'lr=0.003,batch_size=32',
  'lr=0.003,batch_size=64',
  'lr=0.001,batch_size=32',
  'lr=0.001,batch_size=64',
];
const skip = noArchive || noRedis;
let redis: RedisHandle | undefined;
before(async () => {
  if (!skip) redis = await startRedis();
});
after(async () => {
  await redis?.stop();
});

const env = (outputs: string): NodeJS.ProcessEnv => ({
  ...process.env,
  TFPIPE_OUTPUTS: outputs,
  NO_COLOR: '1',
  TFPIPE_LOG_INTERVAL_MS: '0',
});

const HOOK = join(packageRoot, 'dist/test/fixtures/import-log.js');

/** Runs the CLI; with `imports`, also returns every module each process imported, by pid. */
function tfpipe(args: string[], outputs: string, opts: { imports?: string } = {}) {
  const r = spawnSync(process.execPath, [...(opts.imports ? ['--import', HOOK] : []), BIN, ...args], {
    env: { ...env(outputs), ...(opts.imports ? { TFPIPE_IMPORT_LOG: opts.imports } : {}) },
    encoding: 'utf8',
    timeout: 300_000,
    maxBuffer: 64 << 20,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, pid: r.pid };
}

const tfjsLoaders = (log: string) =>
  new Set(
    readFileSync(log, 'utf8')
      .split('\n')
      .filter((l) => l.includes('/node_modules/@tensorflow/'))
      .map((l) => Number(l.split(' ')[0])),
  );

interface RunDoc {
  instances: { id: string; name: string; key: string; state: string; variants: string[] }[];
  variants: { name: string; stages: { name: string; key: string; dir: string }[] }[];
}

/** What must not differ between the three ways of running: keys, metrics, weights, test results. */
function fingerprint(outputs: string, doc: RunDoc) {
  return Object.fromEntries(
    doc.variants.map((v) => {
      const stage = (n: string) => v.stages.find((s) => s.name === n)!;
      const dir = (n: string) => join(outputs, 'tiny-sweep', n, stage(n).key);
      const manifest = (n: string) => JSON.parse(readFileSync(join(dir(n), 'tfpipe-manifest.json'), 'utf8'));
      const metrics = readFileSync(join(dir('train'), 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => {
          const { epoch, train_loss, train_accuracy, val_loss, val_accuracy, lr } = JSON.parse(l);
          return { epoch, train_loss, train_accuracy, val_loss, val_accuracy, lr };
        });
      const weights = Object.fromEntries(
        Object.entries(manifest('train').files as Record<string, { sha256: string }>)
          .filter(([f]) => f.endsWith('.bin'))
          .map(([f, r]) => [f, r.sha256]),
      );
      const evaluation = JSON.parse(readFileSync(join(dir('evaluate'), 'metrics.json'), 'utf8'));
      return [
        v.name,
        {
          keys: Object.fromEntries(v.stages.map((s) => [s.name, s.key])),
          metrics,
          weights,
          test: { accuracy: evaluation.test_accuracy, loss: evaluation.test_loss, confusion: evaluation.confusion },
        },
      ];
    }),
  );
}

function onceEach(doc: RunDoc) {
  for (const name of ['data', 'augmentation', 'model']) {
    const inst = doc.instances.filter((i) => i.name === name);
    assert.equal(inst.length, 1, `${name}: one instance`);
    assert.equal(inst[0].state, 'ran');
    assert.deepEqual(inst[0].variants, VARIANTS, `${name} is shared by every variant`);
  }
  assert.equal(doc.instances.filter((i) => i.name === 'train').length, 4);
}

/** Every finished result verifies, and nothing half-done is left. */
async function allVerify(outputs: string) {
  const store = new ArtefactStore(outputs, 'tiny-sweep');
  let n = 0;
  for (const stage of ['data', 'augmentation', 'model', 'train', 'evaluate', 'report']) {
    for (const key of readdirSync(join(outputs, 'tiny-sweep', stage))) {
      assert.ok(!key.endsWith('.partial'), `${stage}/${key} left behind`);
      const v = await store.verify(stage, key);
      assert.ok(v.ok, `${stage}/${key}: ${v.ok ? '' : v.reason}`);
      n += 1;
    }
  }
  return n;
}

test('a sweep run sequentially, with -j 2 and by two workers (one killed mid-training) gives identical keys and numbers', {
  skip,
  timeout: 600_000,
}, async () => {
  // 1. Sequential, in the coordinating process.
  const seqP = tempProject();
  const file = seqP.write('sweep.yaml', PIPELINE);
  const seq = tfpipe(['run', file, '--json'], seqP.outputs);
  assert.equal(seq.code, 0, seq.stderr);
  const seqDoc = JSON.parse(seq.stdout) as RunDoc;
  onceEach(seqDoc);
  const reference = fingerprint(seqP.outputs, seqDoc);
  assert.equal(
    new Set(Object.values(reference).map((r) => JSON.stringify(r.metrics))).size,
    4,
    'the variants really differ',
  );
  // Each variant keeps its report; the sweep page links them.
  for (const v of VARIANTS) assert.ok(existsSync(join(seqP.outputs, 'tiny-sweep', 'variants', v, 'report.html')), v);
  const page = readFileSync(join(seqP.outputs, 'tiny-sweep', 'sweep.html'), 'utf8');
  for (const v of VARIANTS) assert.ok(page.includes(`href="variants/${encodeURIComponent(v)}/report.html"`), v);
  assert.match(page, /<td>data, augmentation, model<\/td>/);
  assert.ok(existsSync(join(seqP.outputs, 'tiny-sweep', 'sweep', 'accuracy-lr.svg')));

  // 2. -j 2: each instance in its own process; the coordinating process never loads TensorFlow.js.
  const parP = tempProject();
  const imports = join(parP.dir, 'imports.log');
  const par = tfpipe(['run', file, '-j', '2', '--json'], parP.outputs, { imports });
  assert.equal(par.code, 0, par.stderr);
  const parDoc = JSON.parse(par.stdout) as RunDoc;
  onceEach(parDoc);
  assert.deepEqual(fingerprint(parP.outputs, parDoc), reference);
  const loaders = tfjsLoaders(imports);
  assert.ok(loaders.size >= 2, 'the stage processes loaded TensorFlow.js (so the check below can fail)');
  assert.equal(loaders.has(par.pid!), false, 'the coordinator did not');
  const status = tfpipe(['status', file, '--json'], parP.outputs, { imports: join(parP.dir, 'status.log') });
  assert.deepEqual(
    JSON.parse(status.stdout).stages.map((s: { state: string }) => s.state),
    Array(15).fill('cached'),
  );
  assert.equal(tfjsLoaders(join(parP.dir, 'status.log')).size, 0, 'status of a sweep loads no TensorFlow.js');

  // 3. Two workers; the first to reach epoch 2 of a training job is killed with -9 and a third
  //    worker joins. BullMQ hands the stalled job on, and training resumes from the last epoch.
  const qP = tempProject();
  const worker = () => startTfpipe(['worker', '--queue', redis!.url, '--lock-timeout', '2'], env(qP.outputs));
  const workers: Running[] = [worker(), worker()];
  try {
    await Promise.all(workers.map((w) => w.waitFor(/1 job\(s\) at a time/)));
    const coordinator = startTfpipe(['run', file, '--queue', redis!.url, '--json'], env(qP.outputs));
    const victim = await Promise.race(
      workers.map((w) => w.waitFor(/\[tiny-sweep\/train@[0-9a-f]+\] epoch 2\/3 · batch 1\//, 240_000).then(() => w)),
    );
    victim.child.kill('SIGKILL');
    await victim.exited;
    workers.push(worker());
    const code = await coordinator.exited;
    assert.equal(code, 0, coordinator.output());
    const qDoc = JSON.parse(coordinator.output().slice(coordinator.output().indexOf('{\n'))) as RunDoc;
    onceEach(qDoc);
    assert.deepEqual(fingerprint(qP.outputs, qDoc), reference);
    const survivors = workers
      .filter((w) => w !== victim)
      .map((w) => w.output())
      .join('\n');
    assert.match(survivors, /resuming after epoch [12] of 3/);
    assert.match(coordinator.output(), /its worker stopped answering; the job went back to the queue/);
    assert.equal(await allVerify(qP.outputs), 15, '3 shared + 4 × 3 per-variant results');
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
  }
});
