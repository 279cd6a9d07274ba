// Issue 10's measurements: wall time of a four-variant sweep of the cpu-hour pipeline (on a
// CIFAR-10 subset) run one stage at a time, with -j 2, and by two BullMQ workers; stage runs with
// sharing against without; and the queue's overhead per job. Writes outputs/bench/sweep.json.
//   node dist/bench/sweep.js [--train 4000] [--epochs 2]
// Needs the CIFAR-10 archive ($TFPIPE_CIFAR10 or ../shared/data/) and Debian's redis-server.
// Measure on a quiet machine (see the project's quiet protocol).
import { spawnSync } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { Queue } from 'bullmq';
import { QUEUE_NAME } from '../src/executors/redis.js';
import { packageRoot } from '../src/ground/paths.js';
import { BIN, startTfpipe, type Running } from '../harness/cli-process.js';
import { ARCHIVE, noArchive } from '../harness/ml-helpers.js';
import { noRedis, startRedis } from '../harness/redis-server.js';

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
if (noArchive || noRedis) throw new Error(`bench/sweep needs ${noArchive || noRedis}`);
const train = arg('train', 4000);
const epochs = arg('epochs', 2);

// The cpu-hour pipeline as shipped, on a subset and a fixed epoch count, swept over two training
// settings: data, augmentation and model are shared, the other five stages run per variant.
const CPU_HOUR = join(packageRoot, 'pipelines/cifar-vit-cpu-hour.yaml');
const SETS = [
  `data.source=${ARCHIVE}`,
  `data.limit_train=${train}`,
  'data.limit_val=500',
  'data.limit_test=1000',
  `train.epochs=${epochs}`,
  'train.max_minutes=0',
  'rollout.images=8',
].flatMap((x) => ['--set', x]);
const SWEEP = ['-m', '--set', 'train.optimizer.lr=1e-3,2e-3', '--set', 'train.label_smoothing=0,0.1'];

const dir = mkdtempSync(join(tmpdir(), 'tfpipe-bench-sweep-'));
const env = (outputs: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({
  ...process.env,
  TFPIPE_OUTPUTS: outputs,
  NO_COLOR: '1',
  ...extra,
});

interface Doc {
  instances: { name: string; key: string; state: string; seconds: number }[];
  stage_runs: { ran: number; cached: number; without_sharing: number };
}

/** Seconds the stages of a finished run took, read from the manifests the run wrote. */
function stageSeconds(outputs: string): number {
  let total = 0;
  const dir = join(outputs, 'cifar-vit-cpu-hour');
  for (const stage of readdirSync(dir, { withFileTypes: true }).filter(
    (e) => e.isDirectory() && e.name !== 'variants' && e.name !== 'sweep',
  )) {
    for (const key of readdirSync(join(dir, stage.name))) {
      const m = join(dir, stage.name, key, 'tfpipe-manifest.json');
      if (existsSync(m)) total += (JSON.parse(readFileSync(m, 'utf8')) as { seconds: number }).seconds;
    }
  }
  return total;
}

/** The 1-minute load average before each timed run: the machine is shared, so say how quiet it was. */
const loadBefore: Record<string, number> = {};

function timed(args: string[], outputs: string): { seconds: number; doc: Doc } {
  loadBefore[basename(outputs)] = Number(loadavg()[0].toFixed(2));
  const t = process.hrtime.bigint();
  const r = spawnSync(process.execPath, [BIN, args[0], CPU_HOUR, ...SETS, ...SWEEP, ...args.slice(1), '--json'], {
    env: env(outputs),
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  const seconds = Number(process.hrtime.bigint() - t) / 1e9;
  if (r.status !== 0) throw new Error(`${args.join(' ')} failed:\n${r.stderr}`);
  return { seconds, doc: JSON.parse(r.stdout) as Doc };
}

const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return {
    n: s.length,
    median_ms: Math.round(s[Math.floor(s.length / 2)]),
    max_ms: Math.round(s[s.length - 1]),
    min_ms: Math.round(s[0]),
  };
};

/** Per finished job: enqueue -> a worker takes it, and taken -> the stage starts in its child process. */
async function jobLatencies(url: string, outputs: string, pipeline: string) {
  const queue = new Queue(QUEUE_NAME, { connection: { url, maxRetriesPerRequest: null } });
  const jobs = await queue.getJobs(['completed']);
  await queue.close();
  const pickup: number[] = [];
  const start: number[] = [];
  for (const j of jobs) {
    if (j.data.pipeline.name !== pipeline || !j.processedOn) continue;
    pickup.push(j.processedOn - j.timestamp);
    const m = JSON.parse(
      readFileSync(join(outputs, pipeline, j.data.stage, j.data.key, 'tfpipe-manifest.json'), 'utf8'),
    ) as { finishedAt: string; seconds: number };
    start.push(Date.parse(m.finishedAt) - m.seconds * 1000 - j.processedOn);
  }
  return { enqueue_to_worker: stats(pickup), worker_to_stage_start: stats(start) };
}

async function withWorkers<T>(url: string, outputs: string, n: number, fn: () => T | Promise<T>): Promise<T> {
  const workers: Running[] = Array.from({ length: n }, () => startTfpipe(['worker', '--queue', url], env(outputs)));
  try {
    await Promise.all(workers.map((w) => w.waitFor(/job\(s\) at a time/)));
    return await fn();
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
  }
}

const redis = await startRedis();
try {
  const out = (name: string) => join(dir, name);
  const seq = timed(['run'], out('seq'));
  const seq2 = timed(['run', '--set', 'runtime.threads=2'], out('seq-2-threads'));
  const j2 = timed(['run', '-j', '2'], out('j2'));
  const workers = await withWorkers(redis.url, out('workers'), 2, () =>
    timed(['run', '--queue', redis.url], out('workers')),
  );
  const sweepJobs = await jobLatencies(redis.url, out('workers'), 'cifar-vit-cpu-hour');

  // Pure queue overhead: a chain of ten tiny test-kind stages through one idle worker, so every
  // job is queued when the worker has nothing else to do.
  const chain = join(dir, 'chain.yaml');
  writeFileSync(
    chain,
    `name: chain-bench\nstages:\n${Array.from({ length: 10 }, (_, i) => `  s${i}:\n    kind: emit\n    value: ${i}\n${i ? `    needs: [s${i - 1}]\n` : ''}`).join('')}`,
  );
  const plugin = { TFPIPE_PLUGINS: join(packageRoot, 'dist/test/fixtures/kinds.js') };
  const chainOut = out('chain');
  const chainWorker = startTfpipe(['worker', '--queue', redis.url], env(chainOut, plugin));
  await chainWorker.waitFor(/job\(s\) at a time/);
  const tc = process.hrtime.bigint();
  const c = spawnSync(process.execPath, [BIN, 'run', chain, '--queue', redis.url, '--json'], {
    env: env(chainOut, plugin),
    encoding: 'utf8',
  });
  const chainSeconds = Number(process.hrtime.bigint() - tc) / 1e9;
  await chainWorker.stop();
  if (c.status !== 0) throw new Error(c.stderr);
  const idle = await jobLatencies(redis.url, chainOut, 'chain-bench');
  const tl = process.hrtime.bigint();
  const local = spawnSync(process.execPath, [BIN, 'run', chain, '--json'], {
    env: env(out('chain-local'), plugin),
    encoding: 'utf8',
  });
  const localSeconds = Number(process.hrtime.bigint() - tl) / 1e9;
  if (local.status !== 0) throw new Error(local.stderr);

  const shared = seq.doc.instances.filter((i) => ['data', 'augmentation', 'model'].includes(i.name));
  const result = {
    bench: 'sweep',
    cpu: cpus()[0]?.model,
    cores: cpus().length,
    node: process.version,
    pipeline: {
      file: 'pipelines/cifar-vit-cpu-hour.yaml',
      train_images: train,
      epochs,
      variants: 4,
      threads_per_job: 1,
      sweep: SWEEP.join(' '),
    },
    wall_s: {
      sequential: Number(seq.seconds.toFixed(1)),
      sequential_2_threads: Number(seq2.seconds.toFixed(1)),
      j2: Number(j2.seconds.toFixed(1)),
      two_workers: Number(workers.seconds.toFixed(1)),
    },
    // Stage seconds (from the manifests) over wall time x 2 cores: how busy the two slots were.
    core_utilisation: {
      j2: Number((stageSeconds(out('j2')) / (j2.seconds * 2)).toFixed(2)),
      two_workers: Number((stageSeconds(out('workers')) / (workers.seconds * 2)).toFixed(2)),
    },
    ratio_to_sequential: {
      j2: Number((j2.seconds / seq.seconds).toFixed(2)),
      two_workers: Number((workers.seconds / seq.seconds).toFixed(2)),
      sequential_2_threads: Number((seq2.seconds / seq.seconds).toFixed(2)),
    },
    stage_runs: {
      with_sharing: seq.doc.stage_runs.ran,
      without_sharing: seq.doc.stage_runs.without_sharing,
      shared_stage_seconds_saved: Number((shared.reduce((s, i) => s + i.seconds, 0) * 3).toFixed(1)),
    },
    train_seconds_each: seq.doc.instances.filter((i) => i.name === 'train').map((i) => Number(i.seconds.toFixed(1))),
    load_1min_before: loadBefore,
    queue: {
      idle_worker_chain_of_10: { ...idle, wall_s: Number(chainSeconds.toFixed(2)) },
      same_chain_in_process_wall_s: Number(localSeconds.toFixed(2)),
      in_the_sweep: sweepJobs,
    },
  };
  mkdirSync(join(packageRoot, 'outputs', 'bench'), { recursive: true });
  writeFileSync(join(packageRoot, 'outputs', 'bench', 'sweep.json'), `${JSON.stringify(result, null, 2)}\n`);
  console.log(JSON.stringify(result, null, 2));
} finally {
  await redis.stop();
  rmSync(dir, { recursive: true, force: true });
}
