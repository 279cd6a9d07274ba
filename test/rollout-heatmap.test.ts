import assert from 'node:assert/strict';
import { test } from 'node:test';
import { colormap, heatmapPixels, maskedPixels } from '../src/render/heatmap.js';

test('viridis hits matplotlib endpoints and midpoint, and gets brighter', () => {
  assert.deepEqual(colormap('viridis', 0), [68, 1, 84]);
  assert.deepEqual(colormap('viridis', 0.5), [33, 145, 140]);
  assert.deepEqual(colormap('viridis', 1), [253, 231, 37]);
  // Half-way between the 0.0 and 0.1 stops.
  assert.deepEqual(colormap('viridis', 0.05), [70, 19, 101]);
  const luma = (c: number[]) => 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
  for (let i = 1; i <= 20; i++) assert.ok(luma(colormap('viridis', i / 20)) > luma(colormap('viridis', (i - 1) / 20)));
  assert.deepEqual(colormap('viridis', -3), colormap('viridis', 0));
  assert.deepEqual(colormap('viridis', 7), colormap('viridis', 1));
  assert.deepEqual(colormap('viridis', NaN), colormap('viridis', 0));
});

test('jet runs dark blue -> cyan -> yellow -> dark red; gray is linear', () => {
  assert.deepEqual(colormap('jet', 0), [0, 0, 128]);
  assert.deepEqual(colormap('jet', 0.375), [0, 255, 255]);
  assert.deepEqual(colormap('jet', 0.5), [128, 255, 128]);
  assert.deepEqual(colormap('jet', 1), [128, 0, 0]);
  assert.deepEqual(colormap('gray', 0.5), [128, 128, 128]);
});

test('heatmapPixels lays out RGB per mask pixel; maskedPixels multiplies the image', () => {
  const mask = Float32Array.from([0, 1, 0.5, 0.25]);
  const heat = heatmapPixels(mask, 'gray');
  assert.deepEqual(Array.from(heat), [0, 0, 0, 255, 255, 255, 128, 128, 128, 64, 64, 64]);
  const img = Uint8Array.from([200, 100, 50, 200, 100, 50, 200, 100, 50, 10, 20, 255]);
  assert.deepEqual(Array.from(maskedPixels(img, mask)), [0, 0, 0, 200, 100, 50, 100, 50, 25, 3, 5, 64]);
  assert.throws(() => maskedPixels(img, new Float32Array(3)), /mask/);
});
