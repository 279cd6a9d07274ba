// tfpipe CLI: run, status, dag, runs, kinds, schema, worker. Exit codes: 0 ok, 1 a stage failed,
// 2 invalid input or usage, 130 interrupted (see errors.ts).
import { parseArgs } from 'node:util';
import { outputsRoot } from '../cache/outputs.js';
import { InputError } from '../ground/errors.js';
import { loadRegistry } from '../kinds/index.js';
import { loadSweep } from '../sweep/variants.js';
import { DAG_FORMATS, type DagFormat } from '../graph/dag.js';
import { commandRun, commandRuns, commandSchema } from './commands.js';
import { exitQuietlyOnClosedPipe, positiveInt, reportError, UsageError } from './errors.js';
import { commandKinds } from './kinds.js';
import { commandDag, commandStatus } from './views.js';

const USAGE = `Usage:
  tfpipe run FILE [--set key=value]... [-m] [--variant V]... [-j N | --queue URL]
                  [--force STAGE]... [--until STAGE] [--dry-run] [--json]
  tfpipe status FILE [--set key=value]... [-m] [--variant V]... [--json]
  tfpipe dag FILE [--set key=value]... [-m] [--format ${DAG_FORMATS.join('|')}]
  tfpipe runs FILE [--json]
  tfpipe kinds [KIND] [--json]   stage kinds: settings with types, defaults and docs; what they write
  tfpipe worker --queue redis://HOST:PORT [--concurrency N] [--outputs DIR] [--lock-timeout S]
  tfpipe schema            print schemas/pipeline.schema.json for the registered kinds

Overrides use Hydra's syntax: --set train.lr=3e-4 (the "stages." prefix is optional; the last
--set of a key wins). Sweeps: a sweep: block in the file, or -m with --set train.lr=1e-3,2e-3
(Hydra's multirun); --variant lr=1e-3,depth=4 or --variant 3 runs some of them. -j N runs N stage
instances at once, each in a process of its own; --queue hands them to tfpipe workers through
Redis (BullMQ). Artefacts go to outputs/ at the root of the pipeline file's project (its nearest
folder with a package.json or .git), or to $TFPIPE_OUTPUTS.`;

export async function main(argv: string[]): Promise<number> {
  exitQuietlyOnClosedPipe();
  let json = argv.includes('--json');
  try {
    const parsed = parse(argv);
    const { values, positionals } = parsed;
    json = values.json ?? false;
    const [command, file, ...extra] = positionals;
    if (values.help) {
      process.stdout.write(`${USAGE}\n`);
      return 0;
    }
    if (!command) throw new UsageError('no command given');
    checkOptions(command, parsed.tokens);
    if (command === 'dag' && !(DAG_FORMATS as readonly string[]).includes(values.format ?? 'text')) {
      throw new UsageError(`unknown --format "${values.format}"; dag draws ${DAG_FORMATS.join(', ')}`);
    }
    if (command === 'worker') {
      if (file) throw new UsageError('worker takes no pipeline FILE: each job carries its pipeline');
      const { commandWorker } = await import('./worker-command.js');
      return await commandWorker({
        queue: values.queue,
        concurrency: values.concurrency,
        outputs: values.outputs,
        lockTimeout: values['lock-timeout'],
      });
    }
    const registry = await loadRegistry().catch((err: unknown) => {
      // Only plugins can fail to load: TFPIPE_PLUGINS is input like any other.
      throw new InputError(
        `cannot load the stage kinds of TFPIPE_PLUGINS=${process.env.TFPIPE_PLUGINS}: ${(err as Error).message.split('\n')[0]}`,
      );
    });
    if (command === 'schema') {
      if (file) throw new UsageError(`schema takes no arguments, got: ${positionals.slice(1).join(' ')}`);
      return commandSchema(registry);
    }
    if (command === 'kinds') {
      if (extra.length)
        throw new UsageError(`kinds takes at most one KIND, got ${extra.length + 1}: ${[file, ...extra].join(' ')}`);
      return commandKinds(registry, file, json);
    }
    if (command === '_stage') {
      const { commandStage } = await import('./stage-command.js');
      return await commandStage(registry);
    }
    if (!['run', 'status', 'dag', 'runs'].includes(command)) throw new UsageError(`unknown command "${command}"`);
    if (!file || extra.length) throw new UsageError(`${command} takes exactly one pipeline FILE`);
    const jobs = positiveInt(values.jobs, 1, '-j');
    if (jobs > 1 && values.queue)
      throw new UsageError(
        "-j and --queue do not mix: with a queue, each worker's --concurrency says how many jobs it runs",
      );
    const def = loadSweep(file, registry, {
      sets: values.set ?? [],
      multirun: values.multirun ?? false,
      pick: values.variant ?? [],
    });
    const pipeline = def.selected[0].pipeline;
    switch (command) {
      case 'run':
        return await commandRun(def, registry, {
          force: values.force ?? [],
          until: values.until,
          dryRun: values['dry-run'] ?? false,
          json,
          jobs,
          queue: values.queue,
        });
      case 'status':
        return await commandStatus(def, registry, outputsRoot(pipeline), json);
      case 'dag':
        return await commandDag(def, registry, outputsRoot(pipeline), values.format as DagFormat);
      default:
        return await commandRuns(pipeline, json);
    }
  } catch (err) {
    return reportError(err, json, USAGE);
  }
}

// The options each command takes (--json and --help go with all). An option another command
// takes is refused rather than ignored: `run --outputs DIR` would otherwise write elsewhere.
const COMMON = ['json', 'help'];
const SELECT = ['set', 'multirun', 'variant'];
const OPTIONS: Record<string, readonly string[]> = {
  run: [...SELECT, 'jobs', 'queue', 'force', 'until', 'dry-run'],
  status: SELECT,
  dag: [...SELECT, 'format'],
  runs: [],
  kinds: [],
  schema: [],
  worker: ['queue', 'concurrency', 'outputs', 'lock-timeout'],
};

function checkOptions(command: string, tokens: ReturnType<typeof parse>['tokens']): void {
  const takes = OPTIONS[command];
  if (!takes) return; // an unknown command is reported by name further on
  for (const token of tokens) {
    if (token.kind !== 'option' || COMMON.includes(token.name) || takes.includes(token.name)) continue;
    throw new UsageError(`${command} does not take ${token.rawName}`);
  }
}

function parse(argv: string[]) {
  try {
    return parseArgs({
      args: argv,
      allowPositionals: true,
      tokens: true,
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
    throw new UsageError((err as Error).message);
  }
}
