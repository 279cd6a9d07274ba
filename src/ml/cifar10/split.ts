// Train/validation split and class-balanced subsets, all driven by a seeded RNG.
import type { Rng } from '../rng.js';
import { CHANNELS, PIXELS } from './constants.js';
import type { Images } from './records.js';

/** Random split of 0..n-1: `valCount` indices for validation, the rest for training, each sorted. */
export function splitIndices(n: number, valCount: number, rng: Rng): { train: Int32Array; val: Int32Array } {
  if (!Number.isInteger(valCount) || valCount < 0 || valCount > n)
    throw new Error(`split: cannot take ${valCount} of ${n} for validation`);
  const perm = rng.permutation(n);
  const val = perm.slice(0, valCount).sort();
  const train = perm.slice(valCount).sort();
  return { train, val };
}

/**
 * Pick `limit` of `indices` with classes as balanced as the data allows: classes take turns, each
 * taking its next randomly ordered member, so a class that runs out leaves its share to the others.
 * Returns the picked indices sorted (the source order), or all of them when limit >= their count.
 */
export function balancedSubset(indices: Int32Array, labels: Uint8Array, limit: number, rng: Rng): Int32Array {
  if (limit >= indices.length) return indices.slice();
  const byClass = new Map<number, number[]>();
  for (const i of indices) {
    const list = byClass.get(labels[i]) ?? [];
    list.push(i);
    byClass.set(labels[i], list);
  }
  const pools = [...byClass.keys()].sort((a, b) => a - b).map((c) => rng.shuffle(byClass.get(c) as number[]));
  const picked: number[] = [];
  for (let round = 0; picked.length < limit; round++) {
    for (const pool of pools) {
      if (round < pool.length && picked.length < limit) picked.push(pool[round]);
    }
  }
  return Int32Array.from(picked).sort();
}

/** Copy the given records into a new compact set. */
export function take(data: Images, indices: Int32Array): Images {
  const size = PIXELS * CHANNELS;
  const images = new Uint8Array(indices.length * size);
  const labels = new Uint8Array(indices.length);
  indices.forEach((src, dst) => {
    images.set(data.images.subarray(src * size, (src + 1) * size), dst * size);
    labels[dst] = data.labels[src];
  });
  return { images, labels, count: indices.length };
}
