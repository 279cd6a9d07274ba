// Issue 11 item 2: a path setting enters the key by its content, not its spelling.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { localPathSettings, withoutSettings } from '../src/config/path-settings.js';
import { packageRoot } from '../src/ground/paths.js';
import { run, status, tempProject } from './helpers.js';
import { CHILD_TIMEOUT_MS } from '../harness/system.js';

const pipeline = (path: string) =>
  `name: inp\nstages:\n  r:\n    kind: read_input\n    path: ${path}\n  e:\n    kind: emit\n    needs: [r]\n    value: 1\n`;

test('x-path settings are found at any depth; URLs are not local paths', () => {
  const schema = {
    type: 'object',
    properties: {
      source: { type: 'string', 'x-path': true },
      name: { type: 'string' },
      extra: { type: 'array', items: { type: 'object', properties: { file: { type: 'string', 'x-path': true } } } },
    },
  };
  const settings = {
    source: '../x.tar.gz',
    name: 'x.tar.gz',
    extra: [{ file: 'a.txt' }, { file: 'https://example.org/b.txt' }],
  };
  assert.deepEqual(localPathSettings(schema, settings), [
    { path: ['source'], value: '../x.tar.gz' },
    { path: ['extra', 0, 'file'], value: 'a.txt' },
  ]);
  assert.deepEqual(withoutSettings(settings, [['source'], ['extra', 0, 'file']]), {
    name: 'x.tar.gz',
    extra: [{}, { file: 'https://example.org/b.txt' }],
  });
  assert.equal(settings.source, '../x.tar.gz', 'the original is left alone');
});

test('one file spelled four ways gives one key', async () => {
  const p = tempProject();
  mkdirSync(join(p.dir, 'proj', 'sub'), { recursive: true });
  const data = p.write('proj/data.txt', 'hello');
  const spellings = ['data.txt', data, './sub/../data.txt', '../proj/data.txt'];
  const keys = new Set<string>();
  for (const [i, s] of spellings.entries()) {
    const file = p.write(`proj/p${i}.yaml`, pipeline(s));
    const st = await status(file, p.outputs);
    keys.add(`${st.r.key} ${st.e.key}`);
  }
  assert.equal(keys.size, 1, [...keys].join('\n'));
  await run(p.write('proj/p.yaml', pipeline('data.txt')), p.outputs);
  const st = await status(join(p.dir, 'proj/p1.yaml'), p.outputs);
  assert.deepEqual([st.r.state, st.e.state], ['cached', 'cached'], 'the absolute spelling reuses the relative one');
  writeFileSync(data, 'hello, world');
  assert.equal((await status(join(p.dir, 'proj/p1.yaml'), p.outputs)).r.state, 'stale', 'the content still counts');
});

test("runs from different directories reuse each other's work", () => {
  const p = tempProject();
  mkdirSync(join(p.dir, 'a', 'b'), { recursive: true });
  const data = p.write('data.txt', 'hello');
  const file = p.write('p.yaml', pipeline('nothing-yet.txt'));
  const cli = (cwd: string, path: string) => {
    const r = spawnSync(
      process.execPath,
      [resolve(packageRoot, 'bin/tfpipe.js'), 'run', file, '--json', '--set', `r.path=${path}`],
      {
        cwd,
        encoding: 'utf8',
        timeout: CHILD_TIMEOUT_MS,
        killSignal: 'SIGKILL',
        env: {
          ...process.env,
          TFPIPE_OUTPUTS: p.outputs,
          TFPIPE_PLUGINS: resolve(packageRoot, 'dist/test/fixtures/kinds.js'),
          NO_COLOR: '1',
        },
      },
    );
    assert.equal(r.status, 0, r.stderr);
    return (JSON.parse(r.stdout) as { stages: { state: string }[] }).stages.map((s) => s.state);
  };
  assert.deepEqual(cli(p.dir, 'data.txt'), ['ran', 'ran']);
  assert.deepEqual(cli(join(p.dir, 'a', 'b'), relative(join(p.dir, 'a', 'b'), data)), ['cached', 'cached']);
  assert.deepEqual(cli(join(p.dir, 'a'), data), ['cached', 'cached']);
});
