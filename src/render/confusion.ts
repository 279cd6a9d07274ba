// Confusion matrix as an SVG table of shaded cells (rows: true class, columns: predicted).
import sharp from 'sharp';

const esc = (s: string) => s.replace(/[<>&]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;' })[c] ?? c);

export function confusionSvg(
  matrix: number[][],
  classes: string[],
  title = 'Confusion matrix (rows: true, columns: predicted)',
): string {
  const n = classes.length;
  const cell = 44;
  const left = 90;
  const top = 100;
  const w = left + n * cell + 20;
  const h = top + n * cell + 20;
  const rowTotals = matrix.map((r) => r.reduce((a, b) => a + b, 0) || 1);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="DejaVu Sans, sans-serif">`,
    `<rect width="${w}" height="${h}" fill="white"/>`,
    `<text x="${w / 2}" y="18" font-size="13" text-anchor="middle">${esc(title)}</text>`,
  ];
  for (let j = 0; j < n; j++) {
    const x = left + j * cell + cell / 2;
    parts.push(
      `<text x="${x}" y="${top - 8}" font-size="11" text-anchor="start" transform="rotate(-50 ${x} ${top - 8})">${esc(classes[j])}</text>`,
    );
  }
  for (let i = 0; i < n; i++) {
    const y = top + i * cell;
    parts.push(
      `<text x="${left - 6}" y="${y + cell / 2 + 4}" font-size="11" text-anchor="end">${esc(classes[i])}</text>`,
    );
    for (let j = 0; j < n; j++) {
      const frac = matrix[i][j] / rowTotals[i];
      // Diagonal in blue, errors in red, shade by the share of the true class.
      const shade = Math.round(255 - frac * 200);
      const fill = i === j ? `rgb(${shade},${shade},255)` : `rgb(255,${shade},${shade})`;
      parts.push(`<rect x="${left + j * cell}" y="${y}" width="${cell - 1}" height="${cell - 1}" fill="${fill}"/>`);
      parts.push(
        `<text x="${left + j * cell + cell / 2}" y="${y + cell / 2 + 4}" font-size="11" text-anchor="middle" fill="${frac > 0.6 ? 'white' : 'black'}">${matrix[i][j]}</text>`,
      );
    }
  }
  parts.push('</svg>');
  return parts.join('\n');
}

export async function confusionPng(matrix: number[][], classes: string[]): Promise<Buffer> {
  return sharp(Buffer.from(confusionSvg(matrix, classes)))
    .png()
    .toBuffer();
}
