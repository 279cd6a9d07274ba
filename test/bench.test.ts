// `npm run bench` on a fresh checkout: no outputs/ yet, every row says which CPU and which native
// variant ran, one row per variant this CPU runs, and the path auto would take is marked; the GPU
// rows, or one row saying why there are none.
// Tiny batch and one step: this checks what the bench reports, never how fast anything is.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initBackend } from '../src/ml/backend.js';
import { gpuAvailability } from '../src/ml/vit/gpu.js';
import { cpuModel, runnableVariants } from '../src/ml/vit/native.js';

const bench = fileURLToPath(new URL('../bench/bench.js', import.meta.url));

test('the full bench runs with no outputs folder and writes rows with CPU, ISA and the auto choice', async () => {
  await initBackend('wasm', 1);
  const outputs = join(mkdtempSync(join(tmpdir(), 'tfpipe-bench-')), 'fresh-outputs');
  const r = spawnSync(
    process.execPath,
    [bench, '--thread-counts', '1', '--models', 'small', '--steps', '1', '--batch', '4'],
    {
      encoding: 'utf8',
      env: { ...process.env, TFPIPE_OUTPUTS: outputs, TFPIPE_TORCH_PEER: join(outputs, 'no-such-peer.py') },
      timeout: 300_000,
    },
  );
  assert.equal(r.status, 0, r.stderr);
  const file = join(outputs, 'bench', 'bench.jsonl');
  assert.ok(existsSync(file));
  const rows = readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  for (const row of rows) assert.equal(row.cpu, cpuModel());
  const model = rows.filter((row) => row.model_label === 'small' && row.backend === 'wasm');
  const native = model.filter((row) => row.kernels === 'native');
  assert.deepEqual(
    native.map((row) => row.isa),
    runnableVariants(),
  );
  for (const row of native) assert.ok((row.train_img_s as number) > 0 && (row.infer_img_s as number) > 0);
  assert.equal(model.filter((row) => row.auto_choice === true).length, 1, 'exactly one row is the auto choice');
  const peer = rows.find((row) => row.backend === 'pytorch');
  assert.match(String(peer?.note), /peer script not found at .*no-such-peer\.py/);
  // The GPU: rows per precision where it works, else one row saying why not; the same for its peer.
  const gpu = gpuAvailability();
  const cuda = rows.filter((row) => row.kernels === 'cuda');
  if (gpu.ok) {
    assert.deepEqual(
      cuda.map((row) => row.precision),
      ['fp32', 'tf32', 'bf16'],
    );
    for (const row of cuda) assert.ok((row.train_img_s as number) > 0 && row.gpu === gpu.info?.name);
  } else {
    assert.equal(cuda.length, 1);
    assert.equal(cuda[0].note, `no GPU rows: ${gpu.detail}`);
    assert.match(r.stdout, /GPU: no GPU rows: /);
  }
  assert.ok(
    rows.some((row) => row.backend === 'pytorch-cuda'),
    'a GPU peer row (or why there is none)',
  );
  assert.match(r.stdout, /CPU: .*\(\* = the path runtime\.kernels: auto takes;/);
});
