// Seeded pseudo-random numbers. Everything random in tfpipe (splits, augmentation parameters,
// shuffles) draws from here so that the same seed gives the same numbers on every machine.
// mulberry32: 32-bit state, fast, good enough statistically for data pipelines (not for crypto).

export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform in [lo, hi). */
  uniform(lo: number, hi: number): number;
  /** Integer uniform in [lo, hi) (hi exclusive, like Python's randrange / torch.randint). */
  int(lo: number, hi: number): number;
  /** Standard normal (Box-Muller). */
  normal(): number;
  /** Beta(a, b) via two gamma draws (mixup/cutmix mixing weights). */
  beta(a: number, b: number): number;
  /** Fisher-Yates shuffle in place; returns the array. */
  shuffle<T>(items: T[]): T[];
  /** A random permutation of 0..n-1. */
  permutation(n: number): Int32Array;
}

/** Mix 32 bits thoroughly (the finaliser of splitmix32 / murmur3). */
function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/**
 * A seed for one purpose derived from a parent seed and labels, e.g.
 * deriveSeed(pipelineSeed, 'augment', epoch, batch). Different labels give unrelated streams.
 */
export function deriveSeed(seed: number, ...labels: (string | number)[]): number {
  let h = mix32((seed >>> 0) ^ 0x9e3779b9);
  for (const label of labels) {
    const s = typeof label === 'number' ? `#${label}` : label;
    for (let i = 0; i < s.length; i++) h = mix32(h ^ s.charCodeAt(i));
    h = mix32(h ^ 0x7f4a7c15 ^ s.length);
  }
  return h;
}

export function createRng(seed: number): Rng {
  // Pre-mix so that nearby seeds (0, 1, 2...) do not start with correlated outputs.
  let state = mix32(seed >>> 0);
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = (): number => {
    let u = next();
    while (u === 0) u = next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * next());
  };
  // Marsaglia & Tsang; shape < 1 boosted by U^(1/shape).
  const gamma = (shape: number): number => {
    if (shape < 1) return gamma(shape + 1) * (next() || Number.MIN_VALUE) ** (1 / shape);
    const d = shape - 1 / 3;
    const c = 1 / Math.sqrt(9 * d);
    for (;;) {
      let x: number;
      let v: number;
      do {
        x = normal();
        v = 1 + c * x;
      } while (v <= 0);
      v = v * v * v;
      const u = next();
      if (u < 1 - 0.0331 * x * x * x * x) return d * v;
      if (Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
    }
  };
  const rng: Rng = {
    next,
    uniform: (lo, hi) => lo + (hi - lo) * next(),
    int: (lo, hi) => {
      if (!(hi > lo)) throw new Error(`rng.int: empty range [${lo}, ${hi})`);
      return lo + Math.floor(next() * (hi - lo));
    },
    normal,
    beta: (a, b) => {
      const x = gamma(a);
      const y = gamma(b);
      return x / (x + y);
    },
    shuffle: (items) => {
      for (let i = items.length - 1; i > 0; i--) {
        const j = Math.floor(next() * (i + 1));
        const t = items[i];
        items[i] = items[j];
        items[j] = t;
      }
      return items;
    },
    permutation: (n) => {
      const p = new Int32Array(n);
      for (let i = 0; i < n; i++) p[i] = i;
      for (let i = n - 1; i > 0; i--) {
        const j = Math.floor(next() * (i + 1));
        const t = p[i];
        p[i] = p[j];
        p[j] = t;
      }
      return p;
    },
  };
  return rng;
}
