// Issue 11 item 14: one rule for where outputs go, whatever the current directory; status and
// --dry-run never write.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { outputsRoot, projectRoot } from '../src/cache/outputs.js';
import { tfpipe as cli } from './cli-helpers.js';
import { CHAIN, tempProject } from './helpers.js';
import { packageRoot } from '../src/ground/paths.js';

/** The CLI with no TFPIPE_OUTPUTS: outputs go where the rule says. */
const tfpipe = (args: string[], cwd: string) => cli(args, undefined, { cwd });

test("the project root is the nearest folder with package.json or .git, else the file's folder", () => {
  const p = tempProject();
  mkdirSync(join(p.dir, 'proj', 'pipelines', 'deep'), { recursive: true });
  p.write('proj/package.json', '{}');
  assert.equal(projectRoot(join(p.dir, 'proj', 'pipelines', 'deep', 'x.yaml')), join(p.dir, 'proj'));
  mkdirSync(join(p.dir, 'repo', '.git'), { recursive: true });
  mkdirSync(join(p.dir, 'repo', 'exp'));
  assert.equal(projectRoot(join(p.dir, 'repo', 'exp', 'x.yaml')), join(p.dir, 'repo'));
  assert.equal(outputsRoot({ file: join(p.dir, 'proj', 'pipelines', 'x.yaml') }, {}), join(p.dir, 'proj', 'outputs'));
  assert.equal(
    outputsRoot({ file: join(p.dir, 'proj', 'pipelines', 'x.yaml') }, { TFPIPE_OUTPUTS: '/elsewhere/out' }),
    '/elsewhere/out',
  );
});

/** The nearest folder at or above `dir` with a package.json or .git, found without projectRoot. */
function projectMarkerAbove(dir: string): string | undefined {
  for (let d = dir; ; d = dirname(d)) {
    if (existsSync(join(d, 'package.json')) || existsSync(join(d, '.git'))) return d;
    if (dirname(d) === d) return undefined;
  }
}
const markerAboveTmp = projectMarkerAbove(tmpdir());

test("with no package.json or .git above it, a pipeline file's project is its own folder", {
  skip: markerAboveTmp ? `${markerAboveTmp} (above the temporary folder) holds a package.json or .git` : false,
}, () => {
  const p = tempProject();
  mkdirSync(join(p.dir, 'loose'));
  assert.equal(projectRoot(join(p.dir, 'loose', 'x.yaml')), join(p.dir, 'loose'));
  assert.equal(outputsRoot({ file: join(p.dir, 'loose', 'x.yaml') }, {}), join(p.dir, 'loose', 'outputs'));
});

test('running from pipelines/ or from the project root uses one outputs/ at the project root', () => {
  const p = tempProject();
  p.write('package.json', '{"name": "exp"}');
  mkdirSync(join(p.dir, 'pipelines'));
  p.write('pipelines/p.yaml', CHAIN);
  const first = tfpipe(['run', 'p.yaml', '--json'], join(p.dir, 'pipelines'));
  assert.equal(first.code, 0, first.stderr);
  assert.equal(existsSync(join(p.dir, 'pipelines', 'outputs')), false, 'no pipelines/outputs/');
  assert.ok(existsSync(join(p.dir, 'outputs', 'chain', 'tfpipe.lock')));
  const second = tfpipe(['run', 'pipelines/p.yaml', '--json'], p.dir);
  assert.equal(second.code, 0, second.stderr);
  assert.deepEqual(
    JSON.parse(second.stdout).stages.map((s: { state: string }) => s.state),
    ['cached', 'cached', 'cached', 'cached'],
  );
  // And from anywhere else.
  const third = tfpipe(['status', join(p.dir, 'pipelines', 'p.yaml'), '--json'], packageRoot);
  assert.ok(JSON.parse(third.stdout).stages.every((s: { state: string }) => s.state === 'cached'));
  assert.equal(existsSync(join(packageRoot, 'outputs', 'chain')), false);
});

test('status and --dry-run write nothing, not even the input-hash memo', () => {
  const p = tempProject();
  p.write('package.json', '{}');
  p.write('data.txt', 'hello');
  const file = p.write('p.yaml', 'name: inp\nstages:\n  r:\n    kind: read_input\n    path: data.txt\n');
  for (const args of [
    ['status', file],
    ['status', file, '--json'],
    ['run', file, '--dry-run'],
    ['run', file, '--dry-run', '--json'],
  ]) {
    const r = tfpipe(args, p.dir);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(existsSync(join(p.dir, 'outputs')), false, `${args.join(' ')} wrote outputs/`);
  }
  assert.equal(tfpipe(['run', file], p.dir).code, 0);
  assert.deepEqual(readdirSync(join(p.dir, 'outputs', '.cache')), ['input-hashes.json'], 'a run keeps the memo');
});
