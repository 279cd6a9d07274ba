// Per-sample random parameters, drawn in plain JS from the seeded RNG (torchvision's algorithms),
// kept apart from the tensor code so tests can check the sampled boxes themselves.
import type { Rng } from '../rng.js';
import type { Range } from './types.js';

/** A pixel rectangle: top row i, left column j, height h, width w. */
export interface PixelBox {
  i: number;
  j: number;
  h: number;
  w: number;
}

/**
 * torchvision RandomResizedCrop.get_params: up to 10 tries of an area fraction uniform in `scale`
 * and an aspect ratio (w/h) log-uniform in `ratio`; if none fits, the whole image centre-cropped
 * to the nearest allowed ratio.
 */
export function sampleResizedCrop(rng: Rng, height: number, width: number, scale: Range, ratio: Range): PixelBox {
  const area = height * width;
  const logLo = Math.log(ratio[0]);
  const logHi = Math.log(ratio[1]);
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * rng.uniform(scale[0], scale[1]);
    const aspect = Math.exp(rng.uniform(logLo, logHi));
    const w = Math.round(Math.sqrt(target * aspect));
    const h = Math.round(Math.sqrt(target / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      return { i: rng.int(0, height - h + 1), j: rng.int(0, width - w + 1), h, w };
    }
  }
  return centralCropForRatio(height, width, ratio);
}

/** The fallback: the largest centred crop whose ratio lies in `ratio`. */
export function centralCropForRatio(height: number, width: number, ratio: Range): PixelBox {
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < Math.min(...ratio)) h = Math.round(w / Math.min(...ratio));
  else if (inRatio > Math.max(...ratio)) w = Math.round(h * Math.max(...ratio));
  return { i: Math.floor((height - h) / 2), j: Math.floor((width - w) / 2), h, w };
}

/**
 * torchvision RandomErasing.get_params: up to 10 tries of an area fraction in `scale` and a
 * log-uniform ratio; undefined when nothing fits (the image is left alone).
 */
export function sampleErase(rng: Rng, height: number, width: number, scale: Range, ratio: Range): PixelBox | undefined {
  const area = height * width;
  const logLo = Math.log(ratio[0]);
  const logHi = Math.log(ratio[1]);
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * rng.uniform(scale[0], scale[1]);
    const aspect = Math.exp(rng.uniform(logLo, logHi));
    const h = Math.round(Math.sqrt(target * aspect));
    const w = Math.round(Math.sqrt(target / aspect));
    if (!(h < height && w < width)) continue;
    return { i: rng.int(0, height - h + 1), j: rng.int(0, width - w + 1), h, w };
  }
  return undefined;
}

/**
 * torchvision (v2) CutMix box for mixing weight `lam`: a centre uniform over the image, half-sides
 * int(0.5 * sqrt(1 - lam) * side), clipped to the image. The caller recomputes lam from its area.
 */
export function sampleCutmixBox(rng: Rng, height: number, width: number, lam: number): PixelBox {
  const cy = rng.int(0, height);
  const cx = rng.int(0, width);
  const r = 0.5 * Math.sqrt(1 - lam);
  const hh = Math.trunc(r * height);
  const hw = Math.trunc(r * width);
  const y1 = Math.max(cy - hh, 0);
  const x1 = Math.max(cx - hw, 0);
  const y2 = Math.min(cy + hh, height);
  const x2 = Math.min(cx + hw, width);
  return { i: y1, j: x1, h: y2 - y1, w: x2 - x1 };
}

/**
 * cropAndResize box (normalised [y1, x1, y2, x2]) that samples crop `b` of an image edge-padded by
 * one pixel at half-pixel centres: the same sample points as torch's bilinear resize with
 * align_corners=False, and crops never exceed the image, so resizing only upsamples and
 * torchvision's antialias setting makes no difference. One difference remains: an outermost sample
 * that falls less than half a pixel outside the crop blends in the image pixel beyond the crop's
 * edge (torch clamps to the crop's own edge); crops touching the image border match exactly.
 * With the reference's scale [0.8, 1] (sides >= 27 px) that weight is at most 0.08, on the outer row/column.
 */
export function resizeBoxInPadded(
  b: PixelBox,
  height: number,
  width: number,
  outH: number,
  outW: number,
): [number, number, number, number] {
  const sy = b.h / outH;
  const sx = b.w / outW;
  // +1: the one-pixel edge padding; -0.5 + 0.5*s: first half-pixel sample centre.
  const y1 = b.i + 0.5 * sy - 0.5 + 1;
  const x1 = b.j + 0.5 * sx - 0.5 + 1;
  const y2 = y1 + (outH - 1) * sy;
  const x2 = x1 + (outW - 1) * sx;
  return [y1 / (height + 1), x1 / (width + 1), y2 / (height + 1), x2 / (width + 1)];
}
