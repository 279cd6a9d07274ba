// Shared test scaffolding: temp projects, an in-process registry with the test kinds, quiet runs.
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { loadPipeline } from '../src/config/load.js';
import { KindRegistry } from '../src/stage-kind/registry.js';
import { runPipeline } from '../src/sweep/run.js';
import { makePlan } from '../src/runner/plan.js';
import { PlainReporter } from '../src/runner/plain-reporter.js';
import { stageKinds } from './fixtures/kinds.js';

export const testRegistry = () => new KindRegistry(stageKinds);

export function tempProject(): { dir: string; outputs: string; write(name: string, text: string): string } {
  const dir = mkdtempSync(join(tmpdir(), 'tfpipe-test-'));
  return {
    dir,
    outputs: join(dir, 'outputs'),
    write(name, text) {
      const p = join(dir, name);
      writeFileSync(p, text);
      return p;
    },
  };
}

export function silentReporter(lines: string[] = []): PlainReporter {
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      cb();
    },
  });
  return new PlainReporter(sink, 0);
}

export async function run(
  file: string,
  outputs: string,
  sets: string[] = [],
  extra: { force?: string[]; until?: string } = {},
) {
  const registry = testRegistry();
  const pipeline = loadPipeline(file, registry, sets);
  return runPipeline(pipeline, registry, { reporter: silentReporter(), outputs, ...extra });
}

export async function status(file: string, outputs: string, sets: string[] = [], force: string[] = []) {
  const registry = testRegistry();
  const plan = await makePlan(loadPipeline(file, registry, sets), registry, { outputs, force });
  return Object.fromEntries(
    plan.stages.map((s) => [
      s.stage.name,
      { state: s.state, key: s.key, reasons: s.reasons, pending: s.pendingUpstream },
    ]),
  );
}

/** Runs fn and lists the stages whose code executed (test kinds append to $TFPIPE_TEST_COUNTER). */
export function counted<T>(fn: () => Promise<T>): Promise<{ value: T; ran: string[] }> {
  const counter = join(tempProject().dir, 'count.txt');
  process.env.TFPIPE_TEST_COUNTER = counter;
  return fn()
    .then((value) => ({
      value,
      ran: existsSync(counter) ? readFileSync(counter, 'utf8').split('\n').filter(Boolean) : [],
    }))
    .finally(() => {
      delete process.env.TFPIPE_TEST_COUNTER;
    });
}

export const states = (summary: { stages: { name: string; state: string }[] }) =>
  Object.fromEntries(summary.stages.map((s) => [s.name, s.state]));

/** a → b → c, plus an independent d. */
export const CHAIN = `# yaml-language-server: $schema=../schemas/pipeline.schema.json
name: chain
seed: 7
stages:
  a:
    kind: emit
    value: 1
  b:
    kind: emit
    needs: [a]
    value: 10
  c:
    kind: emit
    needs: [b]
    value: 100
    lr: 0.5
  d:
    kind: emit
    value: 1000
`;
