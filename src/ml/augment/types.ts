// Augmentation op descriptions, as written in a pipeline file's `ops:` list.
// Every parameter is optional here and filled from OP_DEFAULTS, which the augmentation schema
// repeats as its "default"s (a test keeps the two equal), so ops built in code and ops read from
// YAML behave the same.

export type Range = [number, number];

export interface FlipOp {
  op: 'random_horizontal_flip';
  p?: number;
}
export interface ResizedCropOp {
  op: 'random_resized_crop';
  size?: number;
  scale?: Range;
  ratio?: Range;
}
export interface RandomCropOp {
  op: 'random_crop';
  size?: number;
  padding?: number;
}
/** mean/std given: those; otherwise (or from: 'data') the cifar10 stage's data.json statistics. */
export interface NormalizeOp {
  op: 'normalize';
  from?: 'data';
  mean?: number[];
  std?: number[];
}
export interface RandAugmentOp {
  op: 'rand_augment';
  num_ops?: number;
  magnitude?: number;
  num_magnitude_bins?: number;
}
export interface TrivialAugmentOp {
  op: 'trivial_augment';
  num_magnitude_bins?: number;
}
export interface RandomErasingOp {
  op: 'random_erasing';
  p?: number;
  scale?: Range;
  ratio?: Range;
  value?: number | number[] | 'random';
}
/** Batch-level: with probability p the batch is mixed with itself rolled by one (see mix.ts). */
export interface MixupOp {
  op: 'mixup';
  alpha?: number;
  p?: number;
}
export interface CutmixOp {
  op: 'cutmix';
  alpha?: number;
  p?: number;
}

export type AugmentOp =
  | FlipOp
  | ResizedCropOp
  | RandomCropOp
  | NormalizeOp
  | RandAugmentOp
  | TrivialAugmentOp
  | RandomErasingOp
  | MixupOp
  | CutmixOp;

export type OpName = AugmentOp['op'];

/** Defaults per op, the same as torchvision's where it has the op (sizes for 32x32 CIFAR). */
export const OP_DEFAULTS = {
  random_horizontal_flip: { p: 0.5 },
  random_resized_crop: { size: 32, scale: [0.08, 1] as Range, ratio: [3 / 4, 4 / 3] as Range },
  random_crop: { size: 32, padding: 4 },
  normalize: {},
  rand_augment: { num_ops: 2, magnitude: 9, num_magnitude_bins: 31 },
  trivial_augment: { num_magnitude_bins: 31 },
  random_erasing: {
    p: 0.5,
    scale: [0.02, 0.33] as Range,
    ratio: [0.3, 3.3] as Range,
    value: 0 as number | number[] | 'random',
  },
  mixup: { alpha: 0.8, p: 0.5 },
  cutmix: { alpha: 1.0, p: 0.5 },
} as const satisfies Record<OpName, object>;

/** An op with every default filled in (normalize's mean/std/from stay optional). */
export type Resolved<T extends AugmentOp> = T & Required<Omit<T, 'from' | 'mean' | 'std'>>;
/** Resolved, distributed over the union so `switch (op.op)` narrows to one resolved op. */
export type ResolvedOp = AugmentOp extends infer T ? (T extends AugmentOp ? Resolved<T> : never) : never;

export function withDefaults(op: AugmentOp): ResolvedOp {
  const defaults = OP_DEFAULTS[op.op];
  if (defaults === undefined) throw new Error(`unknown augmentation op "${String(op.op)}"`);
  const out: Record<string, unknown> = { ...defaults };
  for (const [k, v] of Object.entries(op)) if (v !== undefined) out[k] = v;
  return out as unknown as ResolvedOp;
}
