// Commands that run no stage (status, dag, kinds, a fully cached run) must not load TensorFlow.js,
// sharp, vega or the ViT: those load inside a stage's run(), so these commands start instantly.
// Checked through the module graph (a resolve hook logs every import), not by timing.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { packageRoot } from '../src/ground/paths.js';
import { tempProject } from './helpers.js';
import { ARCHIVE, noArchive } from '../harness/ml-helpers.js';
import { CHILD_TIMEOUT_MS } from '../harness/system.js';

const BIN = resolve(packageRoot, 'bin/tfpipe.js');
const HOOK = resolve(packageRoot, 'dist/test/fixtures/import-log.js');
const QUICK = resolve(packageRoot, 'pipelines/cifar-vit-quick.yaml');
const PLUGINS = ['kinds.js', 'picture-kind.js'].map((f) => resolve(packageRoot, 'dist/test/fixtures', f)).join(',');
// Every ml/ module that runs the model imports @tensorflow/tfjs, so the packages are what to look for.
const HEAVY = [/\/node_modules\/@tensorflow\//, /\/node_modules\/sharp\//, /\/node_modules\/vega/];

/** Run the CLI with the import log on; returns what it printed and every module URL it imported. */
function tfpipe(args: string[], outputs: string, env: Record<string, string> = {}) {
  const log = join(outputs, '..', `imports-${Math.random().toString(36).slice(2)}.log`);
  const r = spawnSync(process.execPath, ['--import', HOOK, BIN, ...args], {
    env: { ...process.env, TFPIPE_OUTPUTS: outputs, TFPIPE_IMPORT_LOG: log, NO_COLOR: '1', ...env },
    encoding: 'utf8',
    timeout: CHILD_TIMEOUT_MS,
    killSignal: 'SIGKILL',
  });
  const imports = existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean) : [];
  rmSync(log, { force: true });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, imports };
}

const heavy = (imports: string[]) => [...new Set(imports.filter((u) => HEAVY.some((re) => re.test(u))))];

test('the import log sees TensorFlow.js when it is loaded (the check below can fail)', () => {
  const p = tempProject();
  const log = join(p.dir, 'control.log');
  const r = spawnSync(
    process.execPath,
    ['--import', HOOK, '-e', "await import('@tensorflow/tfjs'); await import('sharp')"],
    {
      cwd: packageRoot,
      env: { ...process.env, TFPIPE_IMPORT_LOG: log },
      encoding: 'utf8',
      timeout: CHILD_TIMEOUT_MS,
      killSignal: 'SIGKILL',
    },
  );
  assert.equal(r.status, 0, r.stderr);
  const found = heavy(readFileSync(log, 'utf8').split('\n'));
  assert.ok(
    found.some((u) => u.includes('/@tensorflow/tfjs/')),
    found.join('\n'),
  );
  assert.ok(
    found.some((u) => u.includes('/sharp/')),
    found.join('\n'),
  );
});

test('status, dag, kinds and schema of the quick pipeline load no TensorFlow.js, sharp or vega', () => {
  const p = tempProject();
  for (const args of [
    ['status', QUICK, '--json'],
    ['dag', QUICK],
    ['kinds'],
    ['kinds', 'train', '--json'],
    ['schema'],
  ]) {
    const r = tfpipe(args, p.outputs);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.ok(
      r.imports.some((u) => u.endsWith('/dist/src/kinds/train.js')),
      `${args[0]} loaded the kinds`,
    );
    assert.deepEqual(heavy(r.imports), [], `tfpipe ${args.join(' ')}`);
  }
});

test('a fully cached run, report publishing included, loads none of them', () => {
  const p = tempProject();
  const file = p.write(
    'pictures.yaml',
    `name: pictures
stages:
  a: { kind: emit, value: 1 }
  square: { kind: picture, needs: [a] }
  report: { kind: report, needs: [square, a] }
`,
  );
  const first = tfpipe(['run', file, '--json'], p.outputs, { TFPIPE_PLUGINS: PLUGINS });
  assert.equal(first.code, 0, first.stderr);
  assert.ok(
    heavy(first.imports).some((u) => u.includes('/sharp/')),
    'drawing the square loads sharp',
  );
  rmSync(join(p.outputs, 'pictures', 'report.html'));
  const cached = tfpipe(['run', file, '--json'], p.outputs, { TFPIPE_PLUGINS: PLUGINS });
  assert.equal(cached.code, 0, cached.stderr);
  assert.deepEqual(
    JSON.parse(cached.stdout).stages.map((s: { state: string }) => s.state),
    ['cached', 'cached', 'cached'],
  );
  assert.ok(existsSync(join(p.outputs, 'pictures', 'report.html')), 'the report was published again');
  assert.deepEqual(heavy(cached.imports), []);
});

test('a fully cached run of the quick pipeline loads no TensorFlow.js', { skip: noArchive }, () => {
  const p = tempProject();
  const small = [
    `data.source=${ARCHIVE}`,
    'data.limit_train=200',
    'data.limit_val=40',
    'data.limit_test=100',
    'model.dim=16',
    'model.depth=1',
    'model.heads=2',
    'model.dim_head=8',
    'model.mlp_dim=32',
    'train.epochs=1',
    'rollout.images=4',
    'plots.charts=[accuracy]',
  ].flatMap((s) => ['--set', s]);
  const first = tfpipe(['run', QUICK, ...small, '--json'], p.outputs);
  assert.equal(first.code, 0, first.stderr);
  assert.ok(
    heavy(first.imports).some((u) => u.includes('/@tensorflow/tfjs/')),
    'training loads TensorFlow.js',
  );
  const cached = tfpipe(['run', QUICK, ...small, '--json'], p.outputs);
  assert.equal(cached.code, 0, cached.stderr);
  assert.ok(JSON.parse(cached.stdout).stages.every((s: { state: string }) => s.state === 'cached'));
  assert.deepEqual(heavy(cached.imports), []);
});
