// tfpipe CLI: run, status, dag, runs, kinds, schema. Exit codes: 0 ok, 1 a stage failed, 2 invalid input.
import { parseArgs } from 'node:util';
import { ConfigError, formatProblem } from '../config/problems.js';
import { loadPipeline } from '../config/load.js';
import { loadRegistry } from '../stages/registry.js';
import { commandDag, commandRun, commandRuns, commandSchema, commandStatus } from './commands.js';
import { commandKinds } from './kinds.js';

const USAGE = `Usage:
  tfpipe run FILE [--set key=value]... [--force STAGE]... [--until STAGE] [--dry-run] [--json]
  tfpipe status FILE [--set key=value]... [--json]
  tfpipe dag FILE [--format text|mermaid]
  tfpipe runs FILE [--json]
  tfpipe kinds [KIND] [--json]   stage kinds: settings with types, defaults and docs; what they write
  tfpipe schema            print schemas/pipeline.schema.json for the registered kinds

Overrides use Hydra's syntax: --set train.lr=3e-4 (the "stages." prefix is optional).
Artefacts go to ./outputs (or $TFPIPE_OUTPUTS).`;

export class UsageError extends Error {}

export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        set: { type: 'string', multiple: true, default: [] },
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
    const registry = await loadRegistry();
    if (command === 'schema') return commandSchema(registry);
    if (command === 'kinds' && extra.length === 0) return commandKinds(registry, file, values.json ?? false);
    if (!file || extra.length) throw new UsageError(`${command} takes exactly one pipeline FILE`);
    const pipeline = loadPipeline(file, registry, values.set ?? []);
    switch (command) {
      case 'run':
        return await commandRun(pipeline, registry, {
          force: values.force ?? [], until: values.until, dryRun: values['dry-run'] ?? false, json: values.json ?? false,
        });
      case 'status':
        return await commandStatus(pipeline, registry, values.json ?? false);
      case 'dag':
        return commandDag(pipeline, values.format ?? 'text');
      case 'runs':
        return await commandRuns(pipeline, values.json ?? false);
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`tfpipe: ${err.problems.length} problem${err.problems.length === 1 ? '' : 's'} found, nothing was run:\n`);
      for (const p of err.problems) process.stderr.write(`  ${formatProblem(p)}\n`);
      return 2;
    }
    if (err instanceof UsageError) {
      process.stderr.write(`tfpipe: ${err.message}\n${USAGE}\n`);
      return 2;
    }
    process.stderr.write(`tfpipe: ${(err as Error).stack ?? String(err)}\n`);
    return 1;
  }
}
