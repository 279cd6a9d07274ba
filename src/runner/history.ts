// outputs/<pipeline>/runs.jsonl: every `tfpipe run`, for `tfpipe runs`. A run appends a
// "started" line once it holds the run lock and a "finished" line with its outcome at the end,
// so a run that never wrote its end (kill -9, power cut) still shows up: as killed once its
// process is gone.
import { randomBytes } from 'node:crypto';
import { appendFile, mkdir, readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { processAlive } from '../cache/run-lock.js';
import { isObject } from '../ground/json.js';
import type { JsonObject, JsonValue } from '../ground/json.js';
import type { RunSummary } from '../ground/run-summary.js';

/** Marks the runs of one `tfpipe run` of a sweep, one per variant, so `tfpipe runs` groups them. */
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

/** How a run ended; killed and running are read off an unclosed "started" line. */
export type RunOutcome = 'ok' | 'failed' | 'interrupted' | 'killed' | 'running';

/** A run as `tfpipe runs` reads it back from runs.jsonl. */
export interface PastRun {
  started_at: string;
  /** Null while running or when killed. */
  seconds: number | null;
  seed: number;
  /** Stage name -> resolved settings. */
  settings: Record<string, JsonObject>;
  stages: RunSummary['stages'];
  /** Headline numbers found in stage results (best_val_accuracy, test_accuracy, ...). */
  metrics: Record<string, number>;
  sweep?: SweepTag;
  outcome: RunOutcome;
  /** The stages that failed (failed) or was interrupted (interrupted). */
  stopped_at: string[];
  /** A failure outside any stage (e.g. the outputs folder could not be written). */
  error?: string;
  pid?: number;
}

interface StartedLine {
  run: string;
  event: 'started';
  started_at: string;
  pid: number;
  host: string;
  seed: number;
  settings: Record<string, JsonObject>;
  sweep?: SweepTag;
}

interface FinishedLine {
  run: string;
  event: 'finished';
  outcome: 'ok' | 'failed' | 'interrupted';
  seconds: number;
  stages: RunSummary['stages'];
  metrics: Record<string, number>;
  stopped_at: string[];
  error?: string;
}

const FILE = 'runs.jsonl';

/** A finished stage's result and the fields its kind declares as headline (StageKind.headline). */
export interface HeadlineSource {
  headline?: readonly string[];
  result: JsonObject;
}

/** The headline numbers of a run's results, in plan order: a later stage's value wins. */
export function headlineMetrics(results: readonly HeadlineSource[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const { headline, result } of results)
    for (const k of headline ?? []) if (typeof result[k] === 'number') out[k] = result[k] as number;
  return out;
}

async function append(pipelineDir: string, line: StartedLine | FinishedLine): Promise<void> {
  await mkdir(pipelineDir, { recursive: true });
  // One short line per append: concurrent appends of whole lines do not interleave on POSIX.
  await appendFile(join(pipelineDir, FILE), `${JSON.stringify(line)}\n`);
}

/** The outcome a run's stages add up to. */
export function outcomeOf(
  stages: RunSummary['stages'],
  interrupted: boolean,
): Pick<FinishedLine, 'outcome' | 'stopped_at'> {
  const failed = stages.filter((s) => s.state === 'failed');
  if (interrupted)
    return { outcome: 'interrupted', stopped_at: failed.filter((s) => s.error === 'interrupted').map((s) => s.name) };
  return failed.length
    ? { outcome: 'failed', stopped_at: failed.map((s) => s.name) }
    : { outcome: 'ok', stopped_at: [] };
}

/** A run on record: started now, finished by finish(). */
export class RunEntry {
  private readonly t0 = Date.now();
  private constructor(
    private readonly pipelineDir: string,
    private readonly id: string,
  ) {}

  static async start(
    pipelineDir: string,
    run: { started_at: string; seed: number; settings: Record<string, JsonObject>; sweep?: SweepTag },
  ): Promise<RunEntry> {
    const entry = new RunEntry(pipelineDir, `${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`);
    await append(pipelineDir, { run: entry.id, event: 'started', pid: process.pid, host: hostname(), ...run });
    return entry;
  }

  finish(end: Omit<FinishedLine, 'run' | 'event' | 'seconds'>): Promise<void> {
    return append(this.pipelineDir, {
      run: this.id,
      event: 'finished',
      seconds: (Date.now() - this.t0) / 1000,
      ...end,
    });
  }
}

/** A line written before runs had ids: one whole record per run, written at its end. */
function legacy(l: Record<string, unknown>): PastRun | undefined {
  if (typeof l.started_at !== 'string' || !Array.isArray(l.stages) || !isObject(l.settings)) return undefined;
  const stages = l.stages as RunSummary['stages'];
  return {
    started_at: l.started_at,
    seconds: typeof l.seconds === 'number' ? l.seconds : null,
    seed: Number(l.seed ?? 0),
    settings: l.settings as PastRun['settings'],
    stages,
    metrics: isObject(l.metrics) ? (l.metrics as Record<string, number>) : {},
    ...outcomeOf(stages, false),
  };
}

export async function readRuns(pipelineDir: string): Promise<PastRun[]> {
  let text: string;
  try {
    text = await readFile(join(pipelineDir, FILE), 'utf8');
  } catch {
    return [];
  }
  const runs: PastRun[] = [];
  const open = new Map<string, { record: PastRun; host: string }>();
  for (const raw of text.split('\n')) {
    if (!raw.trim()) continue;
    let l: unknown;
    try {
      l = JSON.parse(raw);
    } catch {
      continue; // a line cut short by a crash
    }
    if (!isObject(l)) continue;
    if (l.event === 'started' && typeof l.run === 'string' && typeof l.started_at === 'string') {
      const s = l as unknown as StartedLine;
      const record: PastRun = {
        started_at: s.started_at,
        seconds: null,
        seed: s.seed,
        settings: isObject(s.settings) ? s.settings : {},
        stages: [],
        metrics: {},
        outcome: 'running',
        stopped_at: [],
        pid: s.pid,
        ...(isObject(s.sweep) ? { sweep: s.sweep } : {}),
      };
      open.set(s.run, { record, host: String(s.host) });
      runs.push(record);
    } else if (l.event === 'finished' && typeof l.run === 'string') {
      const f = l as unknown as FinishedLine;
      const o = open.get(f.run);
      if (!o) continue;
      open.delete(f.run);
      Object.assign(o.record, {
        seconds: f.seconds,
        stages: Array.isArray(f.stages) ? f.stages : [],
        metrics: isObject(f.metrics) ? f.metrics : {},
        outcome: f.outcome,
        stopped_at: Array.isArray(f.stopped_at) ? f.stopped_at : [],
        ...(f.error ? { error: f.error } : {}),
      });
    } else {
      const r = legacy(l);
      if (r) runs.push(r);
    }
  }
  for (const { record, host } of open.values()) if (!processAlive(record.pid ?? 0, host)) record.outcome = 'killed';
  return runs;
}
