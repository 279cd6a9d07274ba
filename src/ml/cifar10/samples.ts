// samples.png: a few training images of every class, one class per column.
import { renderGrid, type GridCell } from '../../render/image-grid.js';
import type { Split } from '../dataset.js';
import { CHANNELS, IMAGE_SIZE } from './constants.js';

export async function renderSamples(split: Split, classes: string[], perClass: number): Promise<Buffer> {
  const size = IMAGE_SIZE * IMAGE_SIZE * CHANNELS;
  const columns: number[][] = classes.map(() => []);
  for (let i = 0; i < split.count && columns.some((c) => c.length < perClass); i++) {
    const col = columns[split.labels[i]];
    if (col.length < perClass) col.push(i);
  }
  const cells: GridCell[] = [];
  for (let row = 0; row < perClass; row++) {
    columns.forEach((col, c) => {
      const i = col[row];
      cells.push(
        i === undefined
          ? { pixels: new Uint8Array(size).fill(255), width: IMAGE_SIZE, height: IMAGE_SIZE }
          : {
              pixels: split.images.subarray(i * size, (i + 1) * size),
              width: IMAGE_SIZE,
              height: IMAGE_SIZE,
              caption: classes[c],
            },
      );
    });
  }
  return renderGrid(cells, { columns: classes.length, scale: 2, title: 'CIFAR-10 training samples' });
}
