// tfpipe CLI: run, status, dag, runs, kinds, schema, worker. Exit codes: 0 ok, 1 a stage failed, 2 invalid input.
import { parseArgs } from 'node:util';
import { ConfigError, formatProblem } from '../config/problems.js';
import { outputsRoot } from '../runner/plan.js';
import { loadRegistry } from '../stages/registry.js';
import { isSweep } from '../sweep/run.js';
import { loadSweep } from '../sweep/variants.js';
import { commandDag, commandRun, commandRuns, commandSchema, commandStatus } from './commands.js';
import { commandKinds } from './kinds.js';
import { sweepDag, sweepStatus } from './sweep-views.js';

const USAGE = `Usage:
  tfpipe run FILE [--set key=value]... [-m] [--variant V]... [-j N | --queue URL]
                  [--force STAGE]... [--until STAGE] [--dry-run] [--json]
  tfpipe status FILE [--set key=value]... [-m] [--variant V]... [--json]
  tfpipe dag FILE [--set key=value]... [-m] [--format text|mermaid]
  tfpipe runs FILE [--json]
  tfpipe kinds [KIND] [--json]   stage kinds: settings with types, defaults and docs; what they write
  tfpipe worker --queue redis://HOST:PORT [--concurrency N] [--outputs DIR] [--lock-timeout S]
  tfpipe schema            print schemas/pipeline.schema.json for the registered kinds

Overrides use Hydra's syntax: --set train.lr=3e-4 (the "stages." prefix is optional).
Sweeps: a sweep: block in the file, or -m with --set train.lr=1e-3,2e-3 (Hydra's multirun);
--variant lr=1e-3,depth=4 or --variant 3 runs some of them. -j N runs N stage instances at
once, each in its own process; --queue hands them to tfpipe workers through Redis (BullMQ).
Artefacts go to ./outputs (or $TFPIPE_OUTPUTS).`;

export class UsageError extends Error {}

function jobsOf(text: string | undefined): number {
  if (text === undefined) return 1;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`-j takes a whole number ≥ 1, got "${text}"`);
  return n;
}

export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        set: { type: 'string', multiple: true, default: [] },
        multirun: { type: 'boolean', short: 'm', default: false },
        variant: { type: 'string', multiple: true, default: [] },
        jobs: { type: 'string', short: 'j' },
        queue: { type: 'string' },
        concurrency: { type: 'string' },
        outputs: { type: 'string' },
        'lock-timeout': { type: 'string' },
        force: { type: 'string', multiple: true, default: [] },
        until: { type: 'string' },
        'dry-run': { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        format: { type: 'string', default: 'text' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    process.stderr.write(`tfpipe: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [command, file, ...extra] = positionals;
  if (values.help || !command) {
    (values.help ? process.stdout : process.stderr).write(USAGE + '\n');
    return values.help ? 0 : 2;
  }
  try {
    if (command === 'worker') {
      const { commandWorker } = await import('./worker-command.js');
      if (file) throw new UsageError('worker takes no pipeline FILE: jobs carry their pipeline');
      return await commandWorker({ queue: values.queue, concurrency: values.concurrency, outputs: values.outputs, lockTimeout: values['lock-timeout'] });
    }
    const registry = await loadRegistry();
    if (command === 'schema') return commandSchema(registry);
    if (command === 'kinds' && extra.length === 0) return commandKinds(registry, file, values.json ?? false);
    if (command === '_stage') {
      const { commandStage } = await import('./stage-command.js');
      return await commandStage(registry);
    }
    if (!file || extra.length) throw new UsageError(`${command} takes exactly one pipeline FILE`);
    const jobs = jobsOf(values.jobs);
    if (jobs > 1 && values.queue) throw new UsageError('-j and --queue do not mix: with a queue, each worker\'s --concurrency says how many jobs it runs');
    const def = loadSweep(file, registry, { sets: values.set ?? [], multirun: values.multirun ?? false, pick: values.variant ?? [] });
    switch (command) {
      case 'run':
        return await commandRun(def, registry, {
          force: values.force ?? [], until: values.until, dryRun: values['dry-run'] ?? false, json: values.json ?? false, jobs, queue: values.queue,
        });
      case 'status':
        return isSweep(def) ? await sweepStatus(def, registry, outputsRoot(), values.json ?? false) : await commandStatus(def.selected[0].pipeline, registry, values.json ?? false);
      case 'dag':
        return isSweep(def) ? await sweepDag(def, registry, outputsRoot(), values.format ?? 'text') : commandDag(def.selected[0].pipeline, values.format ?? 'text');
      case 'runs':
        return await commandRuns(def.selected[0].pipeline, values.json ?? false);
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`tfpipe: ${err.problems.length} problem${err.problems.length === 1 ? '' : 's'} found, nothing was run:\n`);
      for (const p of err.problems) process.stderr.write(`  ${formatProblem(p)}\n`);
      return 2;
    }
    if (err instanceof UsageError || (err as Error).name === 'WorkerUsageError') {
      process.stderr.write(`tfpipe: ${(err as Error).message}\n${USAGE}\n`);
      return 2;
    }
    if ((err as Error).name === 'QueueUnavailable') {
      process.stderr.write(`tfpipe: ${(err as Error).message}\n`);
      return 2;
    }
    process.stderr.write(`tfpipe: ${(err as Error).stack ?? String(err)}\n`);
    return 1;
  }
}
