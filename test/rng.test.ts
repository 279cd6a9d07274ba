import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRng, deriveSeed } from '../src/ml/rng.js';

test('same seed gives the same stream, different seeds differ', () => {
  const a = createRng(42);
  const b = createRng(42);
  const c = createRng(43);
  const sa = Array.from({ length: 20 }, () => a.next());
  const sb = Array.from({ length: 20 }, () => b.next());
  const sc = Array.from({ length: 20 }, () => c.next());
  assert.deepEqual(sa, sb);
  assert.notDeepEqual(sa, sc);
});

test('next is in [0,1) with a roughly uniform mean and variance', () => {
  const r = createRng(7);
  let sum = 0;
  let sq = 0;
  const n = 100000;
  for (let i = 0; i < n; i++) {
    const x = r.next();
    assert.ok(x >= 0 && x < 1);
    sum += x;
    sq += x * x;
  }
  const mean = sum / n;
  assert.ok(Math.abs(mean - 0.5) < 0.01, `mean ${mean}`);
  assert.ok(Math.abs(sq / n - mean * mean - 1 / 12) < 0.005);
});

test('int stays in [lo, hi) and hits every value', () => {
  const r = createRng(1);
  const seen = new Set<number>();
  for (let i = 0; i < 1000; i++) {
    const v = r.int(3, 8);
    assert.ok(Number.isInteger(v) && v >= 3 && v < 8);
    seen.add(v);
  }
  assert.deepEqual([...seen].sort(), [3, 4, 5, 6, 7]);
  assert.throws(() => r.int(2, 2), /empty range/);
});

test('shuffle and permutation are permutations', () => {
  const r = createRng(5);
  const xs = r.shuffle(Array.from({ length: 50 }, (_, i) => i));
  assert.deepEqual(
    [...xs].sort((p, q) => p - q),
    Array.from({ length: 50 }, (_, i) => i),
  );
  assert.notDeepEqual(
    xs,
    Array.from({ length: 50 }, (_, i) => i),
  );
  const p = r.permutation(50);
  assert.deepEqual(
    [...p].sort((x, y) => x - y),
    Array.from({ length: 50 }, (_, i) => i),
  );
});

test('normal and beta have the expected means', () => {
  const r = createRng(11);
  const n = 20000;
  let s = 0;
  let s2 = 0;
  for (let i = 0; i < n; i++) {
    const z = r.normal();
    s += z;
    s2 += z * z;
  }
  assert.ok(Math.abs(s / n) < 0.03);
  assert.ok(Math.abs(s2 / n - 1) < 0.05);
  // Beta(a, b) has mean a / (a + b); check both a shape < 1 and > 1.
  for (const [a, b] of [
    [0.2, 0.2],
    [2, 5],
  ]) {
    let m = 0;
    for (let i = 0; i < n; i++) {
      const x = r.beta(a, b);
      assert.ok(x >= 0 && x <= 1);
      m += x;
    }
    assert.ok(Math.abs(m / n - a / (a + b)) < 0.015, `beta(${a},${b}) mean ${m / n}`);
  }
});

test('deriveSeed is deterministic and separates labels', () => {
  assert.equal(deriveSeed(1, 'augment', 3, 7), deriveSeed(1, 'augment', 3, 7));
  const seeds = new Set([
    deriveSeed(1, 'augment', 3, 7),
    deriveSeed(1, 'augment', 7, 3),
    deriveSeed(2, 'augment', 3, 7),
    deriveSeed(1, 'split'),
    deriveSeed(1, 'augment', 37),
    deriveSeed(1, 'augment', '3', 7),
  ]);
  assert.equal(seeds.size, 6);
  const s = deriveSeed(123, 'x');
  assert.ok(Number.isInteger(s) && s >= 0 && s < 2 ** 32);
});
