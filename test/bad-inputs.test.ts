// Issue 11 items 7-13: every user error is one clear line with the documented exit code, never a
// stack trace; under --json, stdout still carries one JSON document. The corpus lives in
// test/fixtures/bad-inputs/ (see its README).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { test } from 'node:test';
import * as tar from 'tar';
import { BIN, cliEnv, tfpipe, type CliResult as Result } from './cli-helpers.js';
import { CHAIN, tempProject } from './helpers.js';
import { CHILD_TIMEOUT_MS } from '../harness/system.js';
import { packageRoot } from '../src/ground/paths.js';

const CORPUS = resolve(packageRoot, 'test/fixtures/bad-inputs');

/** No stack trace: no "    at f (file:line)" frames, no Node error dump. */
function assertNoStack(r: Result): void {
  assert.doesNotMatch(r.stderr + r.stdout, /^\s+at .+[:(]/m, r.stderr);
  assert.doesNotMatch(r.stderr, /internal error|TypeError|ReferenceError|node:internal/, r.stderr);
}

/** The --json run of the same input: one JSON document on stdout, carrying the same exit code. */
function assertJsonError(args: string[], outputs: string, code: number, message: RegExp): void {
  const r = tfpipe([...args, '--json'], outputs);
  assert.equal(r.code, code, r.stderr);
  const doc = JSON.parse(r.stdout);
  assert.equal(doc.error.exit_code, code);
  assert.match(JSON.stringify(doc.error), message);
}

test('a data.source that does not exist: exit 2, positioned, one line (and as JSON)', () => {
  const o = tempProject().outputs;
  const file = join(CORPUS, 'missing-source.yaml');
  const r = tfpipe(['run', file], o);
  assert.equal(r.code, 2);
  assertNoStack(r);
  assert.match(
    r.stderr,
    /missing-source\.yaml:6:13 {2}stages\.data\.source: no such file or folder: .*no-such-archive\.tar\.gz\n$/,
  );
  assert.equal(existsSync(o), false, 'nothing written');
  assertJsonError(['run', file], o, 2, /no such file or folder/);
  assertJsonError(['status', file], o, 2, /no such file or folder/);
});

test('data.limit_train below the number of classes is a config error saying why, before anything runs', () => {
  const p = tempProject();
  const quick = resolve(packageRoot, 'pipelines/cifar-vit-quick.yaml');
  for (const limit of ['5', '9']) {
    const r = tfpipe(['run', quick, '--set', `data.limit_train=${limit}`], p.outputs);
    assert.equal(r.code, 2);
    assertNoStack(r);
    assert.match(
      r.stderr,
      new RegExp(
        `--set data\\.limit_train=${limit}\\s+stages\\.data\\.limit_train: must be >= 10 \\(at least one training image for each of CIFAR-10's 10 classes\\)`,
      ),
    );
  }
  assert.equal(existsSync(p.outputs), false, 'nothing was written');
  // Ten, one per class, is enough.
  assert.equal(tfpipe(['status', quick, '--set', 'data.limit_train=10'], p.outputs).code, 0);
});

test('a YAML bomb is refused with its position, not a stack trace', () => {
  const o = tempProject().outputs;
  const r = tfpipe(['status', join(CORPUS, 'yaml-bomb.yaml')], o);
  assert.equal(r.code, 2);
  assertNoStack(r);
  assert.match(r.stderr, /yaml-bomb\.yaml:4:8 {2}refusing this document: its aliases expand too much/);
  assertJsonError(['run', join(CORPUS, 'yaml-bomb.yaml')], o, 2, /aliases expand too much/);
});

test('a read-only outputs folder: exit 2 naming it and how to fix it; JSON on stdout', () => {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  mkdirSync(p.outputs);
  chmodSync(p.outputs, 0o555);
  // root writes anywhere: run the CLI as nobody then, in a project nobody can read.
  const uid = process.getuid?.() === 0 ? 65534 : undefined;
  chmodSync(p.dir, 0o755);
  const r = tfpipe(['run', file, '--json'], p.outputs, { uid });
  assert.equal(r.code, 2, r.stderr);
  assertNoStack(r);
  assert.match(
    r.stderr,
    new RegExp(
      `^tfpipe: cannot write the outputs folder ${p.outputs}/chain: permission denied; make it writable or set TFPIPE_OUTPUTS to another folder\\n$`,
    ),
  );
  assert.equal(JSON.parse(r.stdout).error.exit_code, 2);
  // status reads and never writes: it works on a read-only cache.
  const st = tfpipe(['status', file, '--json'], p.outputs, { uid });
  assert.equal(st.code, 0, st.stderr);
  assert.deepEqual(
    JSON.parse(st.stdout).stages.map((s: { state: string }) => s.state),
    ['missing', 'missing', 'missing', 'missing'],
  );
});

test('a YAML file as data.source says what kind of source is expected', () => {
  const o = tempProject().outputs;
  const r = tfpipe(['run', join(CORPUS, 'yaml-as-source.yaml')], o);
  assert.equal(r.code, 1);
  assertNoStack(r);
  assert.match(
    r.stdout,
    /data: CIFAR-10 source .*yaml-as-source\.yaml is not a \.tar\.gz archive: expected the binary version of CIFAR-10 \(cifar-10-binary\.tar\.gz\) or the folder it unpacks to \(cifar-10-batches-bin\/\)/,
  );
});

/**
 * A gzip'd tar cut off half-way: a header for data_batch_1.bin (its real size), then zeros where
 * its bytes should be. Made here rather than kept in git: it is data, and six lines make it.
 */
function truncatedArchive(path: string): void {
  const header = Buffer.alloc(512);
  new tar.Header({ path: 'cifar-10-batches-bin/data_batch_1.bin', size: 30730000, mode: 0o644, type: 'File' }).encode(
    header,
  );
  const gz = gzipSync(Buffer.concat([header, Buffer.alloc(1 << 20)]));
  writeFileSync(path, gz.subarray(0, gz.length >> 1));
}

test('a truncated archive names the file and leaves no .partial behind', () => {
  const p = tempProject();
  const o = p.outputs;
  truncatedArchive(join(p.dir, 'truncated.tar.gz'));
  const file = p.write(
    'truncated-archive.yaml',
    'name: bad-truncated-archive\nstages:\n  data:\n    kind: cifar10\n    source: truncated.tar.gz\n',
  );
  const r = tfpipe(['run', file, '--json'], o);
  assert.equal(r.code, 1);
  assertNoStack(r);
  const data = JSON.parse(r.stdout).stages[0];
  assert.equal(data.state, 'failed');
  assert.match(
    data.error,
    /^CIFAR-10 archive .*truncated\.tar\.gz is damaged or truncated \(zlib: unexpected end of file\)/,
  );
  assert.deepEqual(
    readdirSync(join(o, 'bad-truncated-archive')).filter((f) => f !== 'runs.jsonl' && f !== 'tfpipe.lock'),
    [],
    'no data/<key>.partial',
  );
});

test('an offline download names the URL and suggests --set data.source=…', () => {
  const o = tempProject().outputs;
  const r = tfpipe(['run', join(CORPUS, 'offline-download.yaml')], o);
  assert.equal(r.code, 1);
  assertNoStack(r);
  assert.match(
    r.stdout,
    // A resolver that answers says ENOTFOUND; an offline one (no DNS server reachable) EAI_AGAIN.
    /data: cannot download http:\/\/cifar-10\.invalid\/cifar-10-binary\.tar\.gz: fetch failed \((ENOTFOUND|EAI_AGAIN)\)\. Offline\? .*--set data\.source=PATH\/cifar-10-binary\.tar\.gz/,
  );
});

test('the same key in two --set: the last wins and is the one named', () => {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  const r = tfpipe(['status', file, '--set', 'c.lr=1', '--set', 'c.lr=-3'], p.outputs);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^ {2}--set c\.lr=-3 {2}stages\.c\.lr: must be > 0$/m);
  assert.doesNotMatch(r.stderr, /c\.lr=1 /);
  const ok = JSON.parse(
    tfpipe(['run', file, '--dry-run', '--json', '--set', 'c.lr=-3', '--set', 'c.lr=0.25'], p.outputs).stdout,
  );
  assert.equal(ok.stages.length, 4, 'the last value (valid) is the one in effect');
});

test('an unknown --force stage and a plugin that does not load: exit 2, one line, JSON under --json', () => {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  const r = tfpipe(['run', file, '--force', 'nosuch', '--json'], p.outputs);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^tfpipe: no stage named "nosuch" in chain \(stages: a, b, c, d\)$/m);
  assert.equal(JSON.parse(r.stdout).error.exit_code, 2);
  const plugin = spawnSync(process.execPath, [BIN, 'status', file], {
    env: { ...cliEnv(p.outputs), TFPIPE_PLUGINS: join(p.dir, 'missing.js') },
    encoding: 'utf8',
    timeout: CHILD_TIMEOUT_MS,
    killSignal: 'SIGKILL',
  });
  assert.equal(plugin.status, 2);
  assertNoStack({ code: plugin.status, stdout: plugin.stdout, stderr: plugin.stderr });
  assert.match(
    plugin.stderr,
    /^tfpipe: cannot load the stage kinds of TFPIPE_PLUGINS=.*missing\.js: Cannot find module/,
  );
});

test('a cycle and a kind-requirement error are both reported, with "an evaluate stage"', () => {
  const r = tfpipe(['run', join(CORPUS, 'cycle-and-requires.yaml')], tempProject().outputs);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^tfpipe: 2 problems found, nothing was run:$/m);
  assert.match(r.stderr, /cycle-and-requires\.yaml:7:12 {2}stages\.a\.needs: dependency cycle: a -> b -> a$/m);
  assert.match(
    r.stderr,
    /cycle-and-requires\.yaml:14:12 {2}stages\.ev\.needs: an evaluate stage needs stages of kind train, cifar10 and augmentation among its needs$/m,
  );
});

test('dag --format dot draws Graphviz; an unknown format is exit 2', () => {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  const dot = tfpipe(['dag', file, '--format', 'dot'], p.outputs);
  assert.equal(dot.code, 0, dot.stderr);
  const lines = dot.stdout.trim().split('\n');
  assert.equal(lines[0], 'digraph pipeline {');
  assert.equal(lines[lines.length - 1], '}');
  const edges = lines.flatMap((l) => [...l.matchAll(/^ {2}"(\w+)" -> "(\w+)";$/g)].map((m) => `${m[1]}>${m[2]}`));
  assert.deepEqual(edges.sort(), ['a>b', 'b>c'], 'one edge per need');
  assert.ok(lines.includes('  "d" [label="d\\n(emit)"];'), dot.stdout);
  const bad = tfpipe(['dag', file, '--format', 'svg'], p.outputs);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^tfpipe: unknown --format "svg"; dag draws text, mermaid, dot$/m);
  assert.equal(bad.stdout, '');
});

test('status on a damaged tfpipe.lock warns, naming the entry, and exits 0', () => {
  const p = tempProject();
  const file = p.write('p.yaml', CHAIN);
  assert.equal(tfpipe(['run', file], p.outputs).code, 0);
  const lock = join(p.outputs, 'chain', 'tfpipe.lock');
  writeFileSync(lock, readFileSync(lock, 'utf8').replace(/\n {4}inputs: \{\}/, ''));
  const r = tfpipe(['status', file], p.outputs);
  assert.equal(r.code, 0, r.stderr);
  assertNoStack(r);
  assert.match(
    r.stderr,
    /^tfpipe: warning: .*tfpipe\.lock: the entry of stage "a" is damaged \(missing or malformed: inputs\); ignoring it$/m,
  );
  assert.match(r.stdout, /^ {2}a {2}emit {2}cached /m, 'the manifest still says a is up to date');
});

test('status | head: a closed pipe ends the command quietly', { timeout: 120_000 }, async () => {
  const p = tempProject();
  // Enough stages that status writes after the reader is gone.
  const file = p.write(
    'p.yaml',
    `name: many\nstages:\n${Array.from({ length: 300 }, (_, i) => `  s${i}:\n    kind: emit\n    value: ${i}\n`).join('')}`,
  );
  const child = spawn(process.execPath, [BIN, 'status', file], { env: cliEnv(p.outputs) });
  child.stdout.destroy(); // the reader (head) has exited
  let err = '';
  child.stderr.on('data', (d) => {
    err += String(d);
  });
  const code = await new Promise((res) => child.on('exit', res));
  assert.equal(err, '', 'nothing on stderr');
  assert.equal(code, 141, 'the exit status of a tool ended by SIGPIPE');
});
