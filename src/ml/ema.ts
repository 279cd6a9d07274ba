// An exponential moving average of the weights (Polyak averaging), train's `ema` setting: after
// optimizer step t, ema = d_t·ema + (1 − d_t)·w, starting from the weights training starts from.
// Training never reads it; the train stage validates and checkpoints it. It lives in plain
// Float32Arrays in model order, outside any kernel path, so every path averages the same way and
// the same steps give the same bits.

export interface EmaSettings {
  /** d; 0 is off. */
  decay: number;
  /** Step t uses min(decay, (1 + t) / (10 + t)). */
  warmup: boolean;
}

/** The settings when they turn the average on (decay > 0), else undefined. */
export function emaEnabled(s: EmaSettings | undefined): EmaSettings | undefined {
  return s && s.decay > 0 ? s : undefined;
}

/**
 * The decay of step t (from 1). With warm-up it is min(decay, (1 + t) / (10 + t)), TensorFlow's
 * ExponentialMovingAverage with num_updates: early steps keep little of the random initial weights.
 */
export function emaDecay(s: EmaSettings, t: number): number {
  return s.warmup ? Math.min(s.decay, (1 + t) / (10 + t)) : s.decay;
}

/** The running average; what it is after which step is part of its state (resume saves both). */
export class WeightEma {
  /** The average, model order; changes in place on advance(). */
  readonly weights: Float32Array[];
  private done: number;

  /** Starts from copies of `weights`, the average after optimizer step `step` (0: the initial weights). */
  constructor(
    private readonly settings: EmaSettings,
    weights: readonly Float32Array[],
    step = 0,
  ) {
    this.weights = weights.map((w) => Float32Array.from(w));
    this.done = step;
  }

  /** The optimizer step the average has taken in. */
  get step(): number {
    return this.done;
  }

  /**
   * Takes in `weights`, the trained weights after optimizer step `step`. The steps since the last
   * call count as if the weights had held still over them: their decays multiply (d^k over k steps
   * without warm-up), so a trainer that reads its weights only every k steps pays one pass for k,
   * and one called after every step is the exact average.
   */
  advance(weights: readonly Float32Array[], step: number): void {
    if (!(step > this.done)) throw new Error(`internal: EMA advanced to step ${step}, but it is at step ${this.done}`);
    if (weights.length !== this.weights.length)
      throw new Error(`EMA: ${weights.length} weight arrays, expected ${this.weights.length}`);
    let d = 1;
    for (let t = this.done + 1; t <= step; t++) d *= emaDecay(this.settings, t);
    const take = 1 - d;
    this.weights.forEach((e, i) => {
      const w = weights[i];
      if (w.length !== e.length) throw new Error(`EMA: weight ${i} has ${w.length} values, expected ${e.length}`);
      for (let j = 0; j < e.length; j++) e[j] = d * e[j] + take * w[j];
    });
    this.done = step;
  }
}
