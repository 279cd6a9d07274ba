import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { CHAIN, tempProject } from './helpers.js';
import { packageRoot } from '../src/ground/paths.js';
import { CHILD_TIMEOUT_MS } from '../harness/system.js';

const BIN = resolve(packageRoot, 'bin/tfpipe.js');
const PLUGIN = resolve(packageRoot, 'dist/test/fixtures/kinds.js');

function env(outputs: string, extra: Record<string, string> = {}) {
  return { ...process.env, TFPIPE_OUTPUTS: outputs, TFPIPE_PLUGINS: PLUGIN, NO_COLOR: '1', ...extra };
}

function tfpipe(args: string[], outputs: string, extra: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    env: env(outputs, extra),
    encoding: 'utf8',
    timeout: CHILD_TIMEOUT_MS,
    killSignal: 'SIGKILL',
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('run --json prints one JSON document on stdout; status --json explains', () => {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  const r = tfpipe(['run', file, '--json'], p.outputs);
  assert.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout);
  assert.equal(doc.pipeline, 'chain');
  assert.deepEqual(
    doc.stages.map((s: { name: string; state: string }) => `${s.name}:${s.state}`),
    ['a:ran', 'b:ran', 'c:ran', 'd:ran'],
  );
  assert.ok(
    doc.stages.every(
      (s: { key: string; dir: string; seconds: number }) =>
        /^[0-9a-f]{16}$/.test(s.key) && s.dir.includes(s.key) && s.seconds >= 0,
    ),
  );

  const st = tfpipe(['status', file, '--json', '--set', 'b.value=11'], p.outputs);
  assert.equal(st.code, 0, st.stderr);
  const sdoc = JSON.parse(st.stdout);
  assert.deepEqual(
    sdoc.stages.map((s: { state: string }) => s.state),
    ['cached', 'stale', 'stale', 'cached'],
  );
  assert.deepEqual(sdoc.stages[1].reasons, ['setting value changed: 10 → 11']);
  assert.deepEqual(Object.keys(sdoc.stages[0]).sort(), ['key', 'kind', 'name', 'reasons', 'state']);
});

test('invalid input: exit 2, every problem listed, nothing created under outputs/', () => {
  const p = tempProject();
  const file = p.write('p.yaml', 'name: bad\nstages:\n  a:\n    kind: emit\n    value: x\n    lr: 0\n');
  const r = tfpipe(['run', file], p.outputs);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /p\.yaml:5:12 {2}stages\.a\.value: must be number/);
  assert.match(r.stderr, /p\.yaml:6:9 {2}stages\.a\.lr: must be > 0/);
  assert.equal(existsSync(p.outputs), false);
  const o = tfpipe(['run', p.write('q.yaml', CHAIN), '--set', 'c.lr=-1'], p.outputs);
  assert.equal(o.code, 2);
  assert.match(o.stderr, /--set c\.lr=-1 {2}stages\.c\.lr: must be > 0/);
  assert.equal(tfpipe(['frobnicate', file], p.outputs).code, 2);
});

test('an option the command does not take is a usage error, not silently ignored', () => {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  const elsewhere = join(p.dir, 'elsewhere');
  // --outputs is the worker's; run writing to the default folder instead would lose the results.
  const r = tfpipe(['run', file, '--outputs', elsewhere], p.outputs);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^tfpipe: run does not take --outputs\n/);
  assert.equal(existsSync(p.outputs), false);
  assert.equal(existsSync(elsewhere), false);
  const st = tfpipe(['status', file, '--force', 'b', '--json'], p.outputs);
  assert.equal(st.code, 2);
  assert.match(st.stderr, /^tfpipe: status does not take --force\n/);
  assert.equal(JSON.parse(st.stdout).error.exit_code, 2);
  assert.match(tfpipe(['dag', file, '-j', '2'], p.outputs).stderr, /^tfpipe: dag does not take -j\n/);
  // --json goes with every command.
  assert.equal(tfpipe(['dag', file, '--json'], p.outputs).code, 0);
});

test('--dry-run says what would run and why, and writes nothing', () => {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  const r = tfpipe(['run', file, '--dry-run', '--json'], p.outputs);
  assert.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout);
  assert.deepEqual(
    doc.stages.map((s: { state: string }) => s.state),
    ['would run', 'would run', 'would run', 'would run'],
  );
  assert.deepEqual(doc.stages[0].reasons, ['never ran']);
  assert.equal(existsSync(join(p.outputs, 'chain')), false);
  tfpipe(['run', file], p.outputs);
  const again = JSON.parse(tfpipe(['run', file, '--dry-run', '--json', '--set', 'd.value=5'], p.outputs).stdout);
  assert.deepEqual(
    again.stages.map((s: { state: string }) => s.state),
    ['cached', 'cached', 'cached', 'would run'],
  );
});

test('a failing stage gives exit 1', () => {
  const p = tempProject();
  const r = tfpipe(['run', p.write('p.yaml', CHAIN), '--set', 'd.fail=true'], p.outputs);
  assert.equal(r.code, 1);
  assert.match(r.stdout, /\[d\] FAILED .*failed on purpose/);
});

test('dag prints text and mermaid', () => {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  assert.match(tfpipe(['dag', file], p.outputs).stdout, /^c \(emit\) {2}<- b$/m);
  assert.match(tfpipe(['dag', file, '--format', 'mermaid'], p.outputs).stdout, /^ {2}b --> c$/m);
});

test('a run killed with SIGKILL mid-stage leaves nothing trusted; the next run redoes that stage', {
  timeout: 120_000,
}, async () => {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  const child = spawn(process.execPath, [BIN, 'run', file], { env: env(p.outputs, { TFPIPE_TEST_SLEEP: 'b:60000' }) });
  let seen = '';
  await new Promise<void>((res) => {
    child.stdout.on('data', (d) => {
      seen += String(d);
      if (seen.includes('[b] running')) setTimeout(res, 300);
    });
  });
  child.kill('SIGKILL');
  await new Promise((res) => child.on('exit', res));
  const bDir = join(p.outputs, 'chain', 'b');
  const entries = readdirSync(bDir);
  assert.deepEqual(
    entries.filter((e) => !e.endsWith('.partial')),
    [],
    'only a .partial work dir',
  );
  assert.ok(readFileSync(join(bDir, entries[0], 'partial.txt'), 'utf8').startsWith('half'));
  const st = JSON.parse(tfpipe(['status', file, '--json'], p.outputs).stdout);
  assert.deepEqual(
    st.stages.map((s: { state: string }) => s.state),
    ['cached', 'missing', 'missing', 'missing'],
  );
  const again = tfpipe(['run', file, '--json'], p.outputs);
  assert.equal(again.code, 0, again.stderr);
  const doc = JSON.parse(again.stdout);
  assert.deepEqual(
    doc.stages.map((s: { state: string }) => s.state),
    ['cached', 'ran', 'ran', 'ran'],
  );
  assert.deepEqual(readdirSync(bDir), [doc.stages[1].key], 'the partial dir became the finished one');
  assert.equal(JSON.parse(readFileSync(join(bDir, doc.stages[1].key, 'out.json'), 'utf8')).total, 11);
});

test('SIGINT stops after the current step, keeps finished stages, exits 130', { timeout: 120_000 }, async () => {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  const child = spawn(process.execPath, [BIN, 'run', file], { env: env(p.outputs, { TFPIPE_TEST_SLEEP: 'b:60000' }) });
  let seen = '';
  let err = '';
  child.stderr.on('data', (d) => {
    err += String(d);
  });
  child.stdout.on('data', (d) => {
    seen += String(d);
    if (seen.includes('[b] running')) child.kill('SIGINT');
  });
  const code = await new Promise((res) => child.on('exit', res));
  assert.equal(code, 130, seen + err);
  const st = JSON.parse(tfpipe(['status', file, '--json'], p.outputs).stdout);
  assert.deepEqual(
    st.stages.map((s: { state: string }) => s.state),
    ['cached', 'missing', 'missing', 'missing'],
  );
});

test('two concurrent runs of one pipeline do not corrupt anything', { timeout: 120_000 }, async () => {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  const start = () =>
    new Promise<{ code: number | null; out: string }>((res) => {
      const c = spawn(process.execPath, [BIN, 'run', file, '--json'], {
        env: env(p.outputs, { TFPIPE_TEST_SLEEP: 'b:1500' }),
      });
      let out = '';
      c.stdout.on('data', (d) => {
        out += String(d);
      });
      c.on('exit', (code) => res({ code, out }));
    });
  const [x, y] = await Promise.all([start(), start()]);
  assert.equal(x.code, 0);
  assert.equal(y.code, 0);
  const docs = [JSON.parse(x.out), JSON.parse(y.out)];
  const ranB = docs.filter((d) => d.stages[1].state === 'ran').length;
  assert.equal(ranB, 1, "the second run waited and reused the first one's result");
  const st = JSON.parse(tfpipe(['status', file, '--json'], p.outputs).stdout);
  assert.ok(st.stages.every((s: { state: string }) => s.state === 'cached'));
});

test('runs lists past runs with only the settings that changed', () => {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  tfpipe(['run', file], p.outputs);
  tfpipe(['run', file, '--set', 'c.lr=0.2'], p.outputs);
  const doc = JSON.parse(tfpipe(['runs', file, '--json'], p.outputs).stdout);
  assert.equal(doc.runs.length, 2);
  assert.deepEqual(doc.runs[1].changed, { 'c.lr': { from: '0.5', to: '0.2' } });
  assert.deepEqual(doc.runs[1].ran, ['c']);
});

test("Ctrl-C while waiting for the run lock exits 130 at once; nothing runs, the holder's lock stays", {
  timeout: 30_000,
}, async (t) => {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  const lock = join(p.outputs, 'chain', '.run.lock');
  mkdirSync(dirname(lock), { recursive: true });
  // A live holder: this test process.
  writeFileSync(lock, JSON.stringify({ pid: process.pid, host: hostname(), token: 't', since: 'now' }));
  const child = spawn(process.execPath, [BIN, 'run', file, '--json'], { env: env(p.outputs) });
  t.after(() => child.kill('SIGKILL'));
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => {
    out += String(d);
  });
  let sent = 0;
  child.stderr.on('data', (d) => {
    err += String(d);
    if (!sent && err.includes('waiting for it to finish')) {
      sent = Date.now();
      child.kill('SIGINT');
    }
  });
  const code = await new Promise((res) => child.on('exit', res));
  assert.equal(code, 130, err);
  assert.ok(Date.now() - sent < 3000, 'exited promptly');
  assert.match(err, /interrupted while waiting for the run lock; nothing ran/);
  assert.equal(JSON.parse(out).error.exit_code, 130);
  assert.deepEqual(readdirSync(join(p.outputs, 'chain')), ['.run.lock']);
  assert.equal(JSON.parse(readFileSync(lock, 'utf8')).token, 't');
});
