// Wall time of a fully cached `tfpipe run` (Node start-up included) of a 10-stage pipeline:
// the cost a user pays to learn that nothing needs doing. Appends JSON Lines to
// outputs/bench/cached-run.jsonl.
//   node dist/bench/cached-run.js [--repeats 5]
import { spawnSync } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../src/paths.js';

const repeats = Number(process.argv[process.argv.indexOf('--repeats') + 1]) || 5;
const dir = mkdtempSync(join(tmpdir(), 'tfpipe-bench-'));
const stages = Array.from({ length: 10 }, (_, i) =>
  `  s${i}:\n    kind: emit\n    value: ${i}\n${i ? `    needs: [s${i - 1}]\n` : ''}`).join('');
const file = join(dir, 'ten.yaml');
writeFileSync(file, `name: ten\nstages:\n${stages}`);
const env = { ...process.env, TFPIPE_OUTPUTS: join(dir, 'outputs'), TFPIPE_PLUGINS: join(packageRoot, 'dist/test/fixtures/kinds.js'), NO_COLOR: '1' };
const bin = join(packageRoot, 'bin/tfpipe.js');

const run = () => {
  const t = process.hrtime.bigint();
  const r = spawnSync(process.execPath, [bin, 'run', file, '--json'], { env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return { seconds: Number(process.hrtime.bigint() - t) / 1e9, states: (JSON.parse(r.stdout) as { stages: { state: string }[] }).stages.map((s) => s.state) };
};

const first = run();
const times: number[] = [];
for (let i = 0; i < repeats; i++) {
  const r = run();
  if (r.states.some((s) => s !== 'cached')) throw new Error(`expected all cached, got ${r.states}`);
  times.push(r.seconds);
}
times.sort((a, b) => a - b);
const result = {
  bench: 'cached_run',
  stages: 10,
  first_run_s: Number(first.seconds.toFixed(3)),
  cached_run_s_median: Number(times[Math.floor(times.length / 2)].toFixed(3)),
  cached_run_s_min: Number(times[0].toFixed(3)),
  cached_run_s_max: Number(times[times.length - 1].toFixed(3)),
  repeats,
  node: process.version,
};
const out = join(packageRoot, 'outputs', 'bench');
mkdirSync(out, { recursive: true });
appendFileSync(join(out, 'cached-run.jsonl'), JSON.stringify(result) + '\n');
console.log(JSON.stringify(result));
rmSync(dir, { recursive: true, force: true });
