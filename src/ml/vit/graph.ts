// A block diagram of the ViT with tensor shapes, as SVG (the vit stage rasterises it to PNG).
import { convLayerChannels, type FullVitConfig, tokenCount } from './config.js';

interface Box {
  title: string;
  detail: string[];
  shape: string;
  fill: string;
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** The boxes from images to tokens: patchify + linear embedding, or the conv tokenizer's layers. */
function tokenizerBoxes(cfg: FullVitConfig): Box[] {
  const { patches: n, patchDim } = tokenCount(cfg);
  const p = cfg.patchSize;
  if (cfg.tokenizer === 'patch') {
    return [
      {
        title: 'Patchify',
        detail: [`${p}×${p} patches, flattened in (channel, row, column) order`],
        shape: `B×${n}×${patchDim}`,
        fill: '#eef2f7',
      },
      {
        title: 'Patch embedding',
        detail: [`Linear ${patchDim} → ${cfg.dim}`],
        shape: `B×${n}×${cfg.dim}`,
        fill: '#dbe9f6',
      },
    ];
  }
  return Array.from({ length: cfg.convLayers }, (_, l) => {
    const { cin, cout } = convLayerChannels(cfg, l);
    const side = cfg.imageSize / 2 ** (l + 1);
    return {
      title: `Conv tokenizer layer ${l + 1}`,
      detail: [`conv 3×3 ${cin} → ${cout} (no bias), ReLU, max-pool 3×3 stride 2`],
      shape: `B×${side}×${side}×${cout}`,
      fill: '#dbe9f6',
    };
  });
}

/** SVG of patches -> embedding -> +cls/pos -> N x block -> LN -> head, with shapes (B = batch). */
export function modelGraphSvg(cfg: FullVitConfig): string {
  const { patches: n, tokens: t } = tokenCount(cfg);
  const inner = cfg.heads * cfg.dimHead;
  const boxes: Box[] = [
    {
      title: 'Input images',
      detail: [`${cfg.imageSize}×${cfg.imageSize} pixels, ${cfg.channels} channels, normalised`],
      shape: `B×${cfg.imageSize}×${cfg.imageSize}×${cfg.channels}`,
      fill: '#eef2f7',
    },
    ...tokenizerBoxes(cfg),
    {
      title: cfg.pool === 'cls' ? 'Class token + position embedding' : 'Position embedding',
      detail: [
        `${cfg.pool === 'cls' ? 'prepend a learned token, ' : ''}${
          cfg.posEmbedding === 'learned'
            ? `add learned positions (${t}×${cfg.dim})`
            : cfg.posEmbedding === 'sincos'
              ? `add fixed 2-D sin-cos positions (${n}×${cfg.dim})`
              : 'no positions'
        }, dropout ${cfg.dropout}`,
      ],
      shape: `B×${t}×${cfg.dim}`,
      fill: '#dbe9f6',
    },
    {
      title: `Transformer encoder block ×${cfg.depth}`,
      detail: [
        `x = x + MHSA(LN(x)): ${cfg.heads} heads × ${cfg.dimHead}, q/k/v ${cfg.dim} → ${inner} (no bias), out ${inner} → ${cfg.dim}`,
        `x = x + MLP(LN(x)): Linear ${cfg.dim} → ${cfg.mlpDim}, ${cfg.activation === 'gelu' ? 'GELU (exact)' : 'GELU (tanh approx.)'}, Linear ${cfg.mlpDim} → ${cfg.dim}; dropout ${cfg.dropout}`,
      ],
      shape: `B×${t}×${cfg.dim}`,
      fill: '#fde9c9',
    },
    {
      title:
        cfg.pool === 'cls'
          ? 'LayerNorm on the class token'
          : cfg.pool === 'mean'
            ? 'Mean pooling + LayerNorm'
            : 'Sequence pooling + LayerNorm',
      detail: [
        cfg.pool === 'cls'
          ? 'token 0 of the last block'
          : cfg.pool === 'mean'
            ? `mean of the ${t} tokens`
            : `softmax over the ${t} tokens of Linear ${cfg.dim} → 1, weighted mean`,
      ],
      shape: `B×${cfg.dim}`,
      fill: '#e2f0d9',
    },
    {
      title: 'Classifier head',
      detail: [`Linear ${cfg.dim} → ${cfg.classes}`],
      shape: `B×${cfg.classes} logits`,
      fill: '#e2f0d9',
    },
  ];
  const width = 720;
  const boxW = 560;
  const gap = 30;
  const x0 = (width - boxW) / 2;
  const heightOf = (b: Box): number => 44 + 18 * b.detail.length;
  const height = 40 + boxes.reduce((h, b) => h + heightOf(b) + gap, 0);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, Arial, sans-serif">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<defs><marker id="arrow" markerWidth="10" markerHeight="10" refX="5" refY="5" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>`,
    `<text x="${width / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">Vision Transformer (${cfg.depth} blocks, dim ${cfg.dim})</text>`,
  ];
  let y = 40;
  boxes.forEach((b, i) => {
    const boxH = heightOf(b);
    parts.push(
      `<rect x="${x0}" y="${y}" width="${boxW}" height="${boxH}" rx="8" fill="${b.fill}" stroke="#445" stroke-width="1.2"/>`,
      `<text x="${x0 + 12}" y="${y + 22}" font-size="14" font-weight="bold">${esc(b.title)}</text>`,
      `<text x="${x0 + boxW - 12}" y="${y + 22}" font-size="13" text-anchor="end" fill="#225">${esc(b.shape)}</text>`,
      ...b.detail.map(
        (line, k) => `<text x="${x0 + 12}" y="${y + 44 + 18 * k}" font-size="11" fill="#333">${esc(line)}</text>`,
      ),
    );
    y += boxH + gap;
    if (i < boxes.length - 1) {
      parts.push(
        `<line x1="${width / 2}" y1="${y - gap}" x2="${width / 2}" y2="${y - 4}" stroke="#555" stroke-width="1.5" marker-end="url(#arrow)"/>`,
      );
    }
  });
  parts.push('</svg>');
  return parts.join('\n');
}
