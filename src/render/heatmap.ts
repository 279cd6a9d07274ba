// Turning a [0,1] mask into pictures: a colour-mapped heatmap and the image darkened by the mask
// (the report's "image * mask"). Pixels are HWC RGB uint8, the format the image-grid renderer takes.

export type ColormapName = 'viridis' | 'jet' | 'gray';

// matplotlib's viridis sampled at 0, 0.1, ..., 1; linear interpolation between these stops stays
// within a couple of levels of the 256-entry table, invisible at heatmap sizes.
const VIRIDIS: readonly [number, number, number][] = [
  [68, 1, 84],
  [72, 36, 117],
  [65, 68, 135],
  [53, 95, 141],
  [42, 120, 142],
  [33, 145, 140],
  [34, 168, 132],
  [68, 191, 112],
  [122, 209, 81],
  [189, 223, 38],
  [253, 231, 37],
];

const clamp01 = (v: number) => (v < 0 ? 0 : Math.min(v, 1));

/** RGB (0..255) of value v in [0, 1]; values outside are clamped, NaN maps to 0. */
export function colormap(name: ColormapName, v: number): [number, number, number] {
  const t = Number.isNaN(v) ? 0 : clamp01(v);
  if (name === 'gray') {
    const g = Math.round(t * 255);
    return [g, g, g];
  }
  if (name === 'jet') {
    // The classic piecewise-linear jet: blue -> cyan -> yellow -> red.
    const ch = (centre: number) => Math.round(255 * clamp01(1.5 - Math.abs(4 * t - centre)));
    return [ch(3), ch(2), ch(1)];
  }
  const pos = t * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(pos));
  const f = pos - i;
  const a = VIRIDIS[i];
  const b = VIRIDIS[i + 1];
  return [
    Math.round(a[0] + (b[0] - a[0]) * f),
    Math.round(a[1] + (b[1] - a[1]) * f),
    Math.round(a[2] + (b[2] - a[2]) * f),
  ];
}

/** Colour-map a mask (row-major, values in [0,1]) to HWC RGB. */
export function heatmapPixels(mask: Float32Array, name: ColormapName): Uint8Array {
  const out = new Uint8Array(mask.length * 3);
  for (let i = 0; i < mask.length; i++) {
    const [r, g, b] = colormap(name, mask[i]);
    out[i * 3] = r;
    out[i * 3 + 1] = g;
    out[i * 3 + 2] = b;
  }
  return out;
}

/** image * mask per pixel: what the model ignored goes dark. */
export function maskedPixels(image: Uint8Array, mask: Float32Array): Uint8Array {
  if (image.length !== mask.length * 3) {
    throw new Error(`maskedPixels: image has ${image.length} bytes, mask ${mask.length} pixels`);
  }
  const out = new Uint8Array(image.length);
  for (let i = 0; i < mask.length; i++) {
    const m = clamp01(mask[i]);
    for (let c = 0; c < 3; c++) out[i * 3 + c] = Math.round(image[i * 3 + c] * m);
  }
  return out;
}
