// Where outputs go. One rule, whatever the current directory: `outputs/` at the root of the
// project that holds the pipeline file (its nearest ancestor folder with a package.json or a
// .git, else the pipeline file's own folder); TFPIPE_OUTPUTS moves it (relative to the cwd).
// So `tfpipe run cifar.yaml` from pipelines/ and `tfpipe run pipelines/cifar.yaml` from the
// project root share one cache, and no stray pipelines/outputs/ appears.
import { existsSync } from 'node:fs';
import { access, constants, mkdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { InputError } from '../ground/errors.js';

/** The project a pipeline file belongs to: nearest ancestor with package.json or .git. */
export function projectRoot(pipelineFile: string): string {
  const start = dirname(resolve(pipelineFile));
  for (let dir = start; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json')) || existsSync(join(dir, '.git'))) return dir;
    if (dirname(dir) === dir) return start;
  }
}

export function outputsRoot(pipeline: { file: string }, env: NodeJS.ProcessEnv = process.env): string {
  return env.TFPIPE_OUTPUTS ? resolve(env.TFPIPE_OUTPUTS) : join(projectRoot(pipeline.file), 'outputs');
}

/** Creates `dir` (e.g. outputs/<pipeline>/) and checks it is writable, before anything runs. */
export async function ensureWritable(dir: string): Promise<string> {
  try {
    await mkdir(dir, { recursive: true });
    await access(dir, constants.W_OK);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why =
      e.code === 'EACCES' || e.code === 'EPERM'
        ? 'permission denied'
        : e.code === 'EROFS'
          ? 'read-only file system'
          : e.code === 'ENOTDIR' || e.code === 'EEXIST'
            ? 'a file is in the way'
            : e.message;
    throw new InputError(
      `cannot write the outputs folder ${e.path ?? dir}: ${why}; make it writable or set TFPIPE_OUTPUTS to another folder`,
    );
  }
  return dir;
}
