import { test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { renderGrid, upscaleNearest, concatImages, type GridCell } from '../src/render/image-grid.js';

function solid(w: number, h: number, rgb: [number, number, number]): GridCell {
  const pixels = new Uint8Array(w * h * 3);
  for (let i = 0; i < w * h; i++) pixels.set(rgb, i * 3);
  return { pixels, width: w, height: h };
}

async function decode(png: Buffer): Promise<{ data: Buffer; width: number; height: number; channels: number }> {
  const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height, channels: info.channels };
}

function pixelAt(img: { data: Buffer; width: number; channels: number }, x: number, y: number): number[] {
  const o = (y * img.width + x) * img.channels;
  return [img.data[o], img.data[o + 1], img.data[o + 2]];
}

test('upscaleNearest repeats each pixel scale x scale times', () => {
  const src = new Uint8Array([1, 2, 3, 4, 5, 6]); // 2x1 image
  const out = upscaleNearest(src, 2, 1, 2);
  assert.deepEqual([...out], [1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6, 1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6]);
});

test('renderGrid places cells row by row at the computed offsets', async () => {
  const cells = [solid(4, 4, [255, 0, 0]), solid(4, 4, [0, 255, 0]), solid(4, 4, [0, 0, 255])];
  const img = await decode(await renderGrid(cells, { columns: 2, scale: 2, gap: 4, background: '#000000' }));
  // 2 columns of 8 px + 3 gaps; 2 rows of 8 px + 3 gaps.
  assert.equal(img.width, 2 * 8 + 3 * 4);
  assert.equal(img.height, 2 * 8 + 3 * 4);
  assert.deepEqual(pixelAt(img, 4, 4), [255, 0, 0]);
  assert.deepEqual(pixelAt(img, 11, 11), [255, 0, 0]);
  assert.deepEqual(pixelAt(img, 16, 4), [0, 255, 0]);
  assert.deepEqual(pixelAt(img, 4, 16), [0, 0, 255]);
  assert.deepEqual(pixelAt(img, 2, 2), [0, 0, 0]); // gap keeps the background
  assert.deepEqual(pixelAt(img, 20, 20), [0, 0, 0]); // empty fourth slot
});

test('captions, borders and a title add ink outside the cells', async () => {
  const plain = await decode(await renderGrid([solid(8, 8, [128, 128, 128])], { columns: 1, scale: 1, gap: 2 }));
  const cell = { ...solid(8, 8, [128, 128, 128]), caption: 'airplane\nx', border: '#ff0000' };
  const fancy = await decode(await renderGrid([cell], { columns: 1, scale: 1, gap: 2, title: 'Samples' }));
  assert.ok(fancy.height > plain.height + 20, 'two caption lines and a title need room');
  assert.ok(fancy.width > plain.width, 'slot widens to fit the caption');
  let red = 0;
  let dark = 0;
  for (let i = 0; i < fancy.data.length; i += fancy.channels) {
    const [r, g, b] = [fancy.data[i], fancy.data[i + 1], fancy.data[i + 2]];
    if (r > 200 && g < 60 && b < 60) red++;
    if (r < 100 && g < 100 && b < 100) dark++;
  }
  assert.ok(red >= 8 * 4, `border drawn (${red} red pixels)`);
  assert.ok(dark > 20, `caption/title text drawn (${dark} dark pixels)`);
});

test('renderGrid rejects a cell whose buffer does not match its size', async () => {
  await assert.rejects(
    renderGrid([{ pixels: new Uint8Array(5), width: 2, height: 2 }], { columns: 1 }),
    /cell 0 has 5 bytes/,
  );
});

test('concatImages puts images side by side', async () => {
  const a = await renderGrid([solid(4, 4, [255, 0, 0])], { columns: 1, scale: 1, gap: 0 });
  const b = await renderGrid([solid(6, 2, [0, 0, 255])], { columns: 1, scale: 1, gap: 0 });
  const img = await decode(await concatImages([a, b], { gap: 2 }));
  assert.equal(img.width, 4 + 2 + 6);
  assert.equal(img.height, 4);
  assert.deepEqual(pixelAt(img, 0, 0), [255, 0, 0]);
  assert.deepEqual(pixelAt(img, 6, 0), [0, 0, 255]);
});
