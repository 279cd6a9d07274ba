import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pickImages } from '../src/kinds/attention_rollout.js';

const labels = Uint8Array.from({ length: 1000 }, (_, i) => i % 10);

/** A fake classifier: right except on indices the predicate marks, where it says label + 1. */
function classifier(wrong: (i: number) => boolean, calls: number[][] = []) {
  return async (indices: number[]) => {
    calls.push(indices);
    return indices.map((i) => (wrong(i) ? (labels[i] + 1) % 10 : labels[i]));
  };
}

const base = { count: 16, labels, seed: 3, chunk: 100 };

test('picks are seeded: same seed same images, another seed other images', async () => {
  const a = await pickImages({ ...base, includeMisclassified: false, classify: classifier(() => false) });
  const b = await pickImages({ ...base, includeMisclassified: false, classify: classifier(() => false) });
  const c = await pickImages({ ...base, seed: 4, includeMisclassified: false, classify: classifier(() => false) });
  assert.deepEqual(a, b);
  assert.notDeepEqual(
    a.map((p) => p.index),
    c.map((p) => p.index),
  );
  assert.equal(new Set(a.map((p) => p.index)).size, 16);
  assert.ok(a.every((p) => p.index >= 0 && p.index < 1000 && p.predicted === labels[p.index]));
});

test('at least a quarter misclassified: wrong ones replace the last correct picks', async () => {
  const rare = (i: number) => i % 50 === 7; // 2% wrong
  const plain = await pickImages({ ...base, includeMisclassified: false, classify: classifier(rare) });
  const picked = await pickImages({ ...base, includeMisclassified: true, classify: classifier(rare) });
  assert.equal(picked.length, 16);
  assert.equal(new Set(picked.map((p) => p.index)).size, 16);
  const wrong = picked.filter((p) => p.predicted !== labels[p.index]);
  assert.equal(wrong.length, 4);
  assert.ok(wrong.every((p) => rare(p.index)));
  // The correct ones kept are the earliest correct ones of the unbiased draw, in order.
  const keptCorrect = picked.filter((p) => p.predicted === labels[p.index]).map((p) => p.index);
  const plainCorrect = plain.filter((p) => p.predicted === labels[p.index]).map((p) => p.index);
  assert.deepEqual(keptCorrect, plainCorrect.slice(0, keptCorrect.length));
});

test('no extra classification when the draw already has enough wrong ones', async () => {
  const calls: number[][] = [];
  const picked = await pickImages({
    ...base,
    includeMisclassified: true,
    classify: classifier((i) => i % 2 === 0, calls),
  });
  assert.equal(calls.length, 1);
  assert.equal(calls[0].length, 16);
  assert.deepEqual(
    picked.map((p) => p.index),
    calls[0],
  );
});

test('a perfect classifier: everything is scanned, the draw is kept as it is', async () => {
  const calls: number[][] = [];
  const picked = await pickImages({ ...base, includeMisclassified: true, classify: classifier(() => false, calls) });
  assert.equal(
    calls.reduce((n, c) => n + c.length, 0),
    1000,
  );
  assert.deepEqual(
    picked.map((p) => p.index),
    calls[0],
  );
});

test('asking for more images than the test set has returns them all', async () => {
  const small = Uint8Array.from([0, 1, 2]);
  const picked = await pickImages({
    count: 10,
    labels: small,
    seed: 1,
    chunk: 2,
    includeMisclassified: true,
    classify: async (ix) => ix.map(() => 0),
  });
  assert.deepEqual(picked.map((p) => p.index).sort(), [0, 1, 2]);
});
