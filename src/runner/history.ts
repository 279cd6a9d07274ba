// outputs/<pipeline>/runs.jsonl: one line per `tfpipe run`, for `tfpipe runs`.
import { appendFile, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { JsonObject, JsonValue, RunSummary } from '../stages/types.js';

/** Marks the runs of one `tfpipe run` of a sweep, one line per variant, so `tfpipe runs` groups them. */
export interface SweepTag {
  /** The same for every variant of that run. */
  id: string;
  variant: string;
  index: number;
  /** Short setting name -> value. */
  values: Record<string, JsonValue>;
  /** Variants in that run. */
  of: number;
}

export interface RunRecord {
  started_at: string;
  seconds: number;
  seed: number;
  /** Stage name -> resolved settings. */
  settings: Record<string, JsonObject>;
  stages: RunSummary['stages'];
  /** Headline numbers found in stage results (best_val_accuracy, test_accuracy, ...). */
  metrics: Record<string, number>;
  sweep?: SweepTag;
}

const FILE = 'runs.jsonl';
const HEADLINE = ['best_val_accuracy', 'test_accuracy', 'epochs_done', 'images_per_second'];

export function headlineMetrics(results: JsonObject[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of results) for (const k of HEADLINE) if (typeof r[k] === 'number') out[k] = r[k] as number;
  return out;
}

export async function appendRun(pipelineDir: string, rec: RunRecord): Promise<void> {
  await mkdir(pipelineDir, { recursive: true });
  // One short line per append: concurrent appends of whole lines do not interleave on POSIX.
  await appendFile(join(pipelineDir, FILE), JSON.stringify(rec) + '\n');
}

export async function readRuns(pipelineDir: string): Promise<RunRecord[]> {
  let text: string;
  try {
    text = await readFile(join(pipelineDir, FILE), 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((l) => l.trim())
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as RunRecord];
      } catch {
        return []; // a line cut short by a crash
      }
    });
}
