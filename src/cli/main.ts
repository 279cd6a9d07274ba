// tfpipe CLI: run, status, dag, runs, kinds, schema. Exit codes: 0 ok, 1 a stage failed, 2 invalid input
// or usage, 130 interrupted (see errors.ts).
import { parseArgs } from 'node:util';
import { loadPipeline } from '../config/load.js';
import { InputError } from '../config/problems.js';
import { loadRegistry } from '../stages/registry.js';
import { commandDag, commandRun, commandRuns, commandSchema, commandStatus, DAG_FORMATS } from './commands.js';
import { exitQuietlyOnClosedPipe, reportError, UsageError } from './errors.js';
import { commandKinds } from './kinds.js';

export { UsageError } from './errors.js';

const USAGE = `Usage:
  tfpipe run FILE [--set key=value]... [--force STAGE]... [--until STAGE] [--dry-run] [--json]
  tfpipe status FILE [--set key=value]... [--json]
  tfpipe dag FILE [--format ${DAG_FORMATS.join('|')}]
  tfpipe runs FILE [--json]
  tfpipe kinds [KIND] [--json]   stage kinds: settings with types, defaults and docs; what they write
  tfpipe schema            print schemas/pipeline.schema.json for the registered kinds

Overrides use Hydra's syntax: --set train.lr=3e-4 (the "stages." prefix is optional; the last
--set of a key wins). Artefacts go to outputs/ at the root of the pipeline file's project (its
nearest folder with a package.json or .git), or to $TFPIPE_OUTPUTS.`;

export async function main(argv: string[]): Promise<number> {
  exitQuietlyOnClosedPipe();
  let json = argv.includes('--json');
  try {
    const parsed = parse(argv);
    const { values, positionals } = parsed;
    json = values.json ?? false;
    const [command, file, ...extra] = positionals;
    if (values.help) {
      process.stdout.write(USAGE + '\n');
      return 0;
    }
    if (!command) throw new UsageError('no command given');
    if (command === 'dag' && !(DAG_FORMATS as readonly string[]).includes(values.format ?? 'text')) {
      throw new UsageError(`unknown --format "${values.format}"; dag draws ${DAG_FORMATS.join(', ')}`);
    }
    const registry = await loadRegistry().catch((err: unknown) => {
      // Only plugins can fail to load: TFPIPE_PLUGINS is input like any other.
      throw new InputError(`cannot load the stage kinds of TFPIPE_PLUGINS=${process.env.TFPIPE_PLUGINS}: ${(err as Error).message.split('\n')[0]}`);
    });
    if (command === 'schema') return commandSchema(registry);
    if (command === 'kinds' && extra.length === 0) return commandKinds(registry, file, json);
    if (!['run', 'status', 'dag', 'runs'].includes(command)) throw new UsageError(`unknown command "${command}"`);
    if (!file || extra.length) throw new UsageError(`${command} takes exactly one pipeline FILE`);
    const pipeline = loadPipeline(file, registry, values.set ?? []);
    switch (command) {
      case 'run':
        return await commandRun(pipeline, registry, {
          force: values.force ?? [], until: values.until, dryRun: values['dry-run'] ?? false, json,
        });
      case 'status':
        return await commandStatus(pipeline, registry, json);
      case 'dag':
        return commandDag(pipeline, values.format as (typeof DAG_FORMATS)[number]);
      default:
        return await commandRuns(pipeline, json);
    }
  } catch (err) {
    return reportError(err, json, USAGE);
  }
}

function parse(argv: string[]) {
  try {
    return parseArgs({
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
    throw new UsageError((err as Error).message);
  }
}
