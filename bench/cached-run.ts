// Wall time of the commands a user runs to learn that nothing needs doing, through
// `node bin/tfpipe.js` (Node start-up included): `status`, `dag`, `kinds` and a fully cached `run`
// of the quick pipeline (shrunk like the e2e test, so its first run takes seconds), plus a cached
// `run` of a 10-stage chain of test kinds. Appends one JSON line per command to
// outputs/bench/cached-run.jsonl and prints them. Measure on a quiet machine (see the README).
//   node dist/bench/cached-run.js [--repeats 7]
import { spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../src/ground/paths.js';
import { ARCHIVE, QUICK_SMALL_SETS } from '../harness/ml-helpers.js';

const repeats = Number(process.argv[process.argv.indexOf('--repeats') + 1]) || 7;
const dir = mkdtempSync(join(tmpdir(), 'tfpipe-bench-'));
const bin = join(packageRoot, 'bin/tfpipe.js');
const env = { ...process.env, TFPIPE_OUTPUTS: join(dir, 'outputs'), NO_COLOR: '1' };

const chainStages = Array.from(
  { length: 10 },
  (_, i) => `  s${i}:\n    kind: emit\n    value: ${i}\n${i ? `    needs: [s${i - 1}]\n` : ''}`,
).join('');
const chain = join(dir, 'ten.yaml');
writeFileSync(chain, `name: ten\nstages:\n${chainStages}`);
const plugins = { TFPIPE_PLUGINS: join(packageRoot, 'dist/test/fixtures/kinds.js') };

const quick = join(packageRoot, 'pipelines/cifar-vit-quick.yaml');

function tfpipe(args: string[], extraEnv: Record<string, string> = {}): { seconds: number; stdout: string } {
  const t = process.hrtime.bigint();
  const r = spawnSync(process.execPath, [bin, ...args], { env: { ...env, ...extraEnv }, encoding: 'utf8' });
  const seconds = Number(process.hrtime.bigint() - t) / 1e9;
  if (r.status !== 0) throw new Error(`tfpipe ${args.join(' ')} exited ${r.status}:\n${r.stderr}`);
  return { seconds, stdout: r.stdout };
}

function allCached(stdout: string): void {
  const states = (JSON.parse(stdout) as { stages: { state: string }[] }).stages.map((s) => s.state);
  if (states.some((s) => s !== 'cached')) throw new Error(`expected every stage cached, got ${states.join(', ')}`);
}

interface Case {
  name: string;
  args: string[];
  env?: Record<string, string>;
  check?: (stdout: string) => void;
}

const cases: Case[] = [
  { name: 'run_cached_chain10', args: ['run', chain, '--json'], env: plugins, check: allCached },
  { name: 'kinds', args: ['kinds'] },
];
let firstQuickRun: number | undefined;
if (existsSync(ARCHIVE)) {
  firstQuickRun = tfpipe(['run', quick, ...QUICK_SMALL_SETS, '--json']).seconds;
  cases.push(
    { name: 'status_quick', args: ['status', quick, ...QUICK_SMALL_SETS, '--json'] },
    { name: 'dag_quick', args: ['dag', quick] },
    { name: 'run_cached_quick', args: ['run', quick, ...QUICK_SMALL_SETS, '--json'], check: allCached },
  );
} else {
  process.stderr.write(`CIFAR-10 archive not found at ${ARCHIVE}: the quick pipeline cases are left out\n`);
}
tfpipe(['run', chain, '--json'], plugins);

const out = join(packageRoot, 'outputs', 'bench');
mkdirSync(out, { recursive: true });
const cpu = cpus()[0]?.model ?? 'unknown';
const flags = existsSync('/proc/cpuinfo')
  ? (/^flags\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '')
  : '';
const isa = ['avx512f', 'avx2', 'neon', 'asimd'].find((f) => flags.split(' ').includes(f)) ?? process.arch;
for (const c of cases) {
  let seconds: number[];
  try {
    seconds = Array.from({ length: repeats }, () => {
      const r = tfpipe(c.args, c.env);
      c.check?.(r.stdout);
      return r.seconds;
    });
  } catch (err) {
    // e.g. `kinds` on a version that does not have the command yet
    process.stderr.write(`${c.name}: ${(err as Error).message.split('\n')[0]}\n`);
    continue;
  }
  seconds.sort((a, b) => a - b);
  const r3 = (x: number) => Number(x.toFixed(3));
  const result = {
    bench: 'cli_wall',
    command: c.name,
    median_s: r3(seconds[Math.floor(seconds.length / 2)]),
    min_s: r3(seconds[0]),
    max_s: r3(seconds[seconds.length - 1]),
    repeats,
    ...(c.name === 'run_cached_quick' && firstQuickRun !== undefined ? { first_run_s: r3(firstQuickRun) } : {}),
    node: process.version,
    cpu,
    isa,
    date: new Date().toISOString(),
  };
  appendFileSync(join(out, 'cached-run.jsonl'), `${JSON.stringify(result)}\n`);
  console.log(JSON.stringify(result));
}
rmSync(dir, { recursive: true, force: true });
