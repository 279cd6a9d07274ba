// The errors every layer may throw and the CLI turns into exit codes (cli/errors.ts): bad input
// (ConfigError with every problem found, InputError with one line) and an interruption (Aborted).

/** A problem found in a pipeline file or on the command line, with where it is and what was expected. */
export interface Problem {
  /** "pipelines/x.yaml:12:5", or "--set train.lr=abc" for an override. */
  where: string;
  /** Dotted key path, e.g. "stages.train.optimizer.lr"; "" for the whole document. */
  path: string;
  message: string;
}

export function formatProblem(p: Problem): string {
  return p.path ? `${p.where}  ${p.path}: ${p.message}` : `${p.where}  ${p.message}`;
}

/** Thrown when input is invalid; carries every problem found, not just the first. */
export class ConfigError extends Error {
  readonly problems: Problem[];
  constructor(problems: Problem[]) {
    super(problems.map(formatProblem).join('\n'));
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/**
 * Bad input found outside the pipeline file's validation (a file gone since, an outputs folder
 * that cannot be written): one line saying what and how to fix it, exit 2.
 */
export class InputError extends Error {}

/** Work stopped because the run was interrupted (Ctrl-C, SIGTERM): exit 130. */
export class Aborted extends Error {
  constructor(message = 'interrupted') {
    super(message);
  }
}
