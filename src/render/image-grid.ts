// A general image-grid renderer: small RGB images (CIFAR samples, augmentations, heatmaps) laid out
// in rows with optional captions, borders and a title, rendered to PNG by sharp.
// Pixels are upscaled here with nearest neighbour so tiny 32x32 images stay crisp; captions are
// SVG text composited by sharp (librsvg renders with the installed DejaVu fonts).
import sharp from 'sharp';

export interface GridCell {
  /** HWC, RGB, uint8: width*height*3 bytes. */
  pixels: Uint8Array;
  width: number;
  height: number;
  /** Drawn under the cell; '\n' starts a new line. */
  caption?: string;
  /** Any CSS colour (SVG fill); default dark grey. */
  captionColor?: string;
  /** Any CSS colour; draws a frame around the cell (e.g. green/red for right/wrong predictions). */
  border?: string;
}

export interface GridOptions {
  columns: number;
  /** Integer upscale factor for every cell (nearest neighbour). Default 2. */
  scale?: number;
  /** Pixels between cells (after scaling). Default 4. */
  gap?: number;
  title?: string;
  /** Any CSS colour; default white. */
  background?: string;
  /** Caption font size in pixels. Default 11. */
  captionSize?: number;
}

const FONT = 'DejaVu Sans, sans-serif';
const BORDER = 2;

/** Escape text for an SVG text node. */
function xmlEscape(s: string): string {
  return s.replace(
    /[<>&'"]/g,
    (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c] ?? c,
  );
}

/** Nearest-neighbour upscale of an HWC RGB image by an integer factor. */
export function upscaleNearest(pixels: Uint8Array, width: number, height: number, scale: number): Uint8Array {
  if (scale === 1) return pixels;
  const w2 = width * scale;
  const out = new Uint8Array(w2 * height * scale * 3);
  for (let y = 0; y < height * scale; y++) {
    const sy = Math.floor(y / scale);
    for (let x = 0; x < w2; x++) {
      const s = (sy * width + Math.floor(x / scale)) * 3;
      const d = (y * w2 + x) * 3;
      out[d] = pixels[s];
      out[d + 1] = pixels[s + 1];
      out[d + 2] = pixels[s + 2];
    }
  }
  return out;
}

/** Render cells row by row into one PNG. Each slot is as large as the largest cell; cells are centred in it. */
export async function renderGrid(cells: GridCell[], opts: GridOptions): Promise<Buffer> {
  if (cells.length === 0) throw new Error('renderGrid: no cells');
  if (!Number.isInteger(opts.columns) || opts.columns < 1)
    throw new Error(`renderGrid: columns must be a positive integer, got ${opts.columns}`);
  const scale = opts.scale ?? 2;
  if (!Number.isInteger(scale) || scale < 1)
    throw new Error(`renderGrid: scale must be a positive integer, got ${scale}`);
  const gap = opts.gap ?? 4;
  const fontSize = opts.captionSize ?? 11;
  const lineHeight = Math.ceil(fontSize * 1.25);
  for (const [i, c] of cells.entries()) {
    if (c.pixels.length !== c.width * c.height * 3) {
      throw new Error(
        `renderGrid: cell ${i} has ${c.pixels.length} bytes, expected ${c.width}x${c.height}x3 = ${c.width * c.height * 3}`,
      );
    }
  }

  const columns = Math.min(opts.columns, cells.length);
  const rows = Math.ceil(cells.length / columns);
  const anyBorder = cells.some((c) => c.border !== undefined);
  const frame = anyBorder ? BORDER : 0;
  const captionLines = cells.map((c) => (c.caption === undefined || c.caption === '' ? [] : c.caption.split('\n')));
  const maxLines = Math.max(0, ...captionLines.map((l) => l.length));
  // DejaVu Sans averages ~0.6 em per character: widen slots so captions do not run into neighbours.
  const captionWidth = Math.max(0, ...captionLines.flat().map((l) => Math.ceil(l.length * fontSize * 0.6)));
  const imageW = Math.max(...cells.map((c) => c.width * scale)) + 2 * frame;
  const imageH = Math.max(...cells.map((c) => c.height * scale)) + 2 * frame;
  const slotW = Math.max(imageW, captionWidth);
  const captionH = maxLines * lineHeight + (maxLines > 0 ? 2 : 0);
  const slotH = imageH + captionH;
  const titleH = opts.title ? Math.ceil(fontSize * 1.3) + 8 : 0;
  const width = columns * slotW + (columns + 1) * gap;
  const height = titleH + rows * slotH + (rows + 1) * gap;

  const composites: sharp.OverlayOptions[] = [];
  const svg: string[] = [];
  if (opts.title) {
    svg.push(
      `<text x="${width / 2}" y="${gap + fontSize * 1.3}" font-family="${FONT}" font-size="${Math.round(fontSize * 1.3)}" font-weight="bold" text-anchor="middle" fill="#222">${xmlEscape(opts.title)}</text>`,
    );
  }
  cells.forEach((cell, i) => {
    const col = i % columns;
    const row = Math.floor(i / columns);
    const slotX = gap + col * (slotW + gap);
    const slotY = titleH + gap + row * (slotH + gap);
    const w = cell.width * scale;
    const h = cell.height * scale;
    const x = slotX + Math.floor((slotW - w) / 2);
    const y = slotY + frame + Math.floor((imageH - 2 * frame - h) / 2);
    composites.push({
      input: Buffer.from(upscaleNearest(cell.pixels, cell.width, cell.height, scale)),
      raw: { width: w, height: h, channels: 3 },
      left: x,
      top: y,
    });
    if (cell.border !== undefined) {
      svg.push(
        `<rect x="${x - frame / 2}" y="${y - frame / 2}" width="${w + frame}" height="${h + frame}" fill="none" stroke="${xmlEscape(cell.border)}" stroke-width="${frame}"/>`,
      );
    }
    captionLines[i].forEach((line, k) => {
      const ty = slotY + imageH + 1 + (k + 1) * lineHeight - Math.ceil(lineHeight - fontSize);
      svg.push(
        `<text x="${slotX + slotW / 2}" y="${ty}" font-family="${FONT}" font-size="${fontSize}" text-anchor="middle" fill="${xmlEscape(cell.captionColor ?? '#333')}">${xmlEscape(line)}</text>`,
      );
    });
  });
  if (svg.length > 0) {
    const doc = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${svg.join('')}</svg>`;
    composites.push({ input: Buffer.from(doc), left: 0, top: 0 });
  }
  return sharp({ create: { width, height, channels: 3, background: opts.background ?? '#ffffff' } })
    .composite(composites)
    .png()
    .toBuffer();
}

/** Place PNGs side by side (or stacked), top/left aligned, e.g. two grids that belong in one figure. */
export async function concatImages(
  pngs: Buffer[],
  opts: { direction?: 'horizontal' | 'vertical'; gap?: number; background?: string } = {},
): Promise<Buffer> {
  if (pngs.length === 0) throw new Error('concatImages: no images');
  const gap = opts.gap ?? 8;
  const metas = await Promise.all(pngs.map((p) => sharp(p).metadata()));
  const sizes = metas.map((m) => ({ w: m.width ?? 0, h: m.height ?? 0 }));
  const horizontal = (opts.direction ?? 'horizontal') === 'horizontal';
  const width = horizontal
    ? sizes.reduce((s, z) => s + z.w, 0) + gap * (pngs.length - 1)
    : Math.max(...sizes.map((z) => z.w));
  const height = horizontal
    ? Math.max(...sizes.map((z) => z.h))
    : sizes.reduce((s, z) => s + z.h, 0) + gap * (pngs.length - 1);
  let offset = 0;
  const composites = pngs.map((input, i) => {
    const o = horizontal ? { input, left: offset, top: 0 } : { input, left: 0, top: offset };
    offset += (horizontal ? sizes[i].w : sizes[i].h) + gap;
    return o;
  });
  return sharp({ create: { width, height, channels: 3, background: opts.background ?? '#ffffff' } })
    .composite(composites)
    .png()
    .toBuffer();
}
