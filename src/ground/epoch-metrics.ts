// The train stage's per-epoch metrics: metrics.jsonl in its stage folder, one JSON object per
// line, rewritten after every epoch. The plots stage draws it and the report tabulates it.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

export const EPOCH_METRICS_FILE = 'metrics.jsonl';

export interface EpochMetrics {
  epoch: number;
  train_loss: number;
  train_accuracy: number;
  /** null when the data has no validation split; with train's EMA on, the EMA's. */
  val_loss: number | null;
  val_accuracy: number | null;
  /** With train's EMA on (and a validation split): the trained weights' validation, for comparison. */
  raw_val_loss?: number;
  raw_val_accuracy?: number;
  lr: number;
  images_per_second: number;
  seconds: number;
  elapsed_seconds: number;
  /** Live tensors after the epoch: flat across epochs unless something leaks. */
  tensors: number;
}

const NULLABLE = new Set<keyof EpochMetrics>(['val_loss', 'val_accuracy']);
const FIELDS: readonly (keyof EpochMetrics)[] = [
  'epoch',
  'train_loss',
  'train_accuracy',
  'val_loss',
  'val_accuracy',
  'lr',
  'images_per_second',
  'seconds',
  'elapsed_seconds',
  'tensors',
];

/** Present only in some runs: kept when numbers, else left out. */
const OPTIONAL: readonly (keyof EpochMetrics)[] = ['raw_val_loss', 'raw_val_accuracy'];

export function formatMetricsJsonl(rows: readonly EpochMetrics[]): string {
  return `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`;
}

/**
 * Parse metrics.jsonl. A missing or non-numeric field becomes NaN, or null for the validation
 * fields, which the writer leaves null (readers skip both when drawing or averaging).
 */
export function parseMetricsJsonl(text: string): EpochMetrics[] {
  const rows: EpochMetrics[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch (e) {
      throw new Error(`${EPOCH_METRICS_FILE} line ${i + 1} is not JSON: ${(e as Error).message}`);
    }
    const rec = obj as Record<string, unknown>;
    const row = {} as Record<keyof EpochMetrics, number | null>;
    for (const f of FIELDS) {
      const v = rec[f];
      row[f] = typeof v === 'number' && Number.isFinite(v) ? v : NULLABLE.has(f) ? null : NaN;
    }
    for (const f of OPTIONAL) if (typeof rec[f] === 'number') row[f] = rec[f] as number;
    rows.push(row as EpochMetrics);
  });
  return rows;
}

/** The metrics of a finished (or checkpointed) train stage folder. */
export async function readMetrics(trainStageDir: string): Promise<EpochMetrics[]> {
  return parseMetricsJsonl(await readFile(join(trainStageDir, EPOCH_METRICS_FILE), 'utf8'));
}
