// Issue 19, fault 5: a full disk. A write error names its file, and a result never holds a
// half-written file: what a writer stopped by ENOSPC (or killed) left under a temporary name is
// removed before a resumed attempt and before a result is sealed. The end-to-end case fills a
// small tmpfs, which needs root and the mount syscall; it skips with the reason elsewhere.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statfsSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { tfpipe } from './cli-helpers.js';
import { test } from 'node:test';
import { TEMPORARY_NAME, writeFile } from '../src/cache/atomic.js';
import { MANIFEST, ArtefactStore } from '../src/cache/store.js';
import { tempProject } from './helpers.js';
import { noArchive, tinyPipeline } from '../harness/ml-helpers.js';

const noDevFull = existsSync('/dev/full') ? false : 'needs /dev/full (Linux) to make a write fail with ENOSPC';

test('a write that fails for lack of space names its file, keeping the system error code', {
  skip: noDevFull,
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tfpipe-enospc-'));
  // A file that is a link to /dev/full: every write to it fails with ENOSPC, like a full disk.
  const file = join(dir, 'weights.bin');
  symlinkSync('/dev/full', file);
  await assert.rejects(writeFile(file, new Uint8Array(4096)), (err: NodeJS.ErrnoException) => {
    assert.equal(err.code, 'ENOSPC');
    assert.equal(err.syscall, 'write');
    assert.equal(err.path, file);
    assert.equal(err.message, `ENOSPC: no space left on device, write '${file}'`);
    return true;
  });
  rmSync(dir, { recursive: true, force: true });
});

test('what a stopped or killed writer left under a temporary name never enters a result', async () => {
  const p = tempProject();
  const store = new ArtefactStore(p.outputs, 'pipe');
  const work = await store.prepareWorkDir('train', 'k1', true);
  // What an attempt stopped mid-write leaves: the temporary names of saveCheckpoint, replaceDir
  // and writeFileAtomic, at the top and deeper down, beside finished files.
  const leftovers = [
    'last.tmp.tmp-4242/weights.bin',
    'last.tmp/model.json',
    'best.old/weights.bin',
    'deep/.m.jsonl.1a2b3c4d.tmp',
  ];
  const write = (rel: string, text: string) => {
    mkdirSync(join(work, rel, '..'), { recursive: true });
    writeFileSync(join(work, rel), text);
  };
  for (const rel of leftovers) write(rel, 'half');
  write('last/weights.bin', 'whole');
  write('deep/metrics.jsonl', 'whole');
  write('.resume/epoch-1.tmp/state.json', 'resume scratch');
  // A resumed attempt starts without them (.resume/ is the kind's own business)...
  await store.prepareWorkDir('train', 'k1', true);
  for (const rel of leftovers) assert.equal(existsSync(join(work, rel)), false, rel);
  assert.ok(existsSync(join(work, 'last/weights.bin')));
  assert.ok(existsSync(join(work, '.resume/epoch-1.tmp/state.json')));
  // ...and a result is sealed without any that appear later (kill -9 leaves them at any time).
  for (const rel of leftovers) write(rel, 'half');
  const m = await store.commit('train', 'k1', {
    pipeline: 'pipe',
    stage: 'train',
    key: 'k1',
    inputs: { kind: 'train', version: 1, settings: {}, needs: {}, inputs: {}, seed: 0 },
    result: {},
    seconds: 0,
    finishedAt: new Date().toISOString(),
  });
  assert.deepEqual(Object.keys(m.files).sort(), ['deep/metrics.jsonl', 'last/weights.bin', 'result.json']);
  const final = store.stageDir('train', 'k1');
  const all = (d: string): string[] =>
    readdirSync(d, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? all(join(d, e.name)) : [join(d, e.name)],
    );
  assert.deepEqual(
    all(final).filter((f) => f.split('/').some((part) => TEMPORARY_NAME.test(part))),
    [],
  );
  assert.ok(existsSync(join(final, MANIFEST)));
});

/** Mounts a tmpfs of `mb` MB on a new folder, or says why it cannot. */
function smallDisk(mb: number): { dir: string; unmount(): void } | string {
  if (process.getuid?.() !== 0) return 'mounting a small tmpfs needs root';
  const dir = mkdtempSync(join(tmpdir(), 'tfpipe-small-disk-'));
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${mb}m`, 'tmpfs', dir], {
    encoding: 'utf8',
    timeout: 10_000,
  });
  if (r.status !== 0) return `cannot mount a tmpfs here (${(r.stderr || r.error?.message || '').trim()})`;
  return {
    dir,
    unmount: () => {
      spawnSync('umount', [dir], { timeout: 10_000 });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

test('train on a full disk fails naming the file; with room again the result holds no half-written file', {
  skip: noArchive,
  timeout: 300_000,
}, (t) => {
  const disk = smallDisk(16);
  if (typeof disk === 'string') return t.skip(disk);
  try {
    const p = tempProject();
    const file = p.write('tiny.yaml', tinyPipeline('tiny-full'));
    const outputs = join(disk.dir, 'outputs');
    // Everything train needs, while there is room.
    for (const until of ['augmentation', 'model']) {
      const upstream = tfpipe(['run', file, '--until', until], outputs);
      assert.equal(upstream.code, 0, upstream.stderr + upstream.stdout);
    }
    // Leave 40 KB: less than one checkpoint's weights.bin (about 85 KB for this model).
    const free = () => {
      const s = statfsSync(disk.dir);
      return s.bavail * s.bsize;
    };
    const filler = join(disk.dir, 'filler');
    writeFileSync(filler, new Uint8Array(free() - 40 * 1024));
    const full = tfpipe(['run', file], outputs);
    assert.equal(full.code, 1, full.stderr + full.stdout);
    const said = full.stderr + full.stdout;
    assert.match(said, /ENOSPC: no space left on device, write '[^']*\/tiny-full\/train\/[0-9a-f]+\.partial\/[^']+'/);
    assert.doesNotMatch(said, /^\s+at /m, 'no stack trace');
    // The failed attempt kept its work dir (train resumes), but nothing half-written in it.
    const trainDir = join(outputs, 'tiny-full', 'train');
    const partial = readdirSync(trainDir).find((e) => e.endsWith('.partial'));
    assert.ok(partial);
    const names = (d: string): string[] =>
      readdirSync(d, { withFileTypes: true }).flatMap((e) => [
        e.name,
        ...(e.isDirectory() ? names(join(d, e.name)) : []),
      ]);
    assert.deepEqual(
      names(join(trainDir, partial)).filter((n) => TEMPORARY_NAME.test(n)),
      [],
    );

    rmSync(filler);
    const roomy = tfpipe(['run', file, '--until', 'train', '--json'], outputs);
    assert.equal(roomy.code, 0, roomy.stderr);
    const dir = resolve(JSON.parse(roomy.stdout).stages.find((s: { name: string }) => s.name === 'train').dir);
    const manifest = JSON.parse(readFileSync(join(dir, MANIFEST), 'utf8')) as {
      files: Record<string, { size: number }>;
    };
    const listed = Object.keys(manifest.files);
    assert.deepEqual(
      listed.filter((f) => f.split('/').some((part) => TEMPORARY_NAME.test(part))),
      [],
    );
    assert.deepEqual(
      names(dir).filter((n) => TEMPORARY_NAME.test(n)),
      [],
    );
    for (const which of ['best', 'last'])
      assert.equal(
        manifest.files[`${which}/weights.bin`].size,
        manifest.files['last/weights.bin'].size,
        `${which}/weights.bin whole`,
      );
  } finally {
    disk.unmount();
  }
});
