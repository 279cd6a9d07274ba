// What became of each stage in one run: `tfpipe run --json` prints it, runs.jsonl records it,
// kinds with a publish hook (the report) and the report page show it.

export type RunState = 'ran' | 'cached' | 'failed' | 'skipped';

export interface RunSummary {
  pipeline: string;
  startedAt: string;
  backend?: string;
  stages: { name: string; kind: string; state: RunState; key: string; seconds: number; dir: string; error?: string }[];
}
