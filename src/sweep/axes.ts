// The swept settings: the file's `sweep:` block plus, with -m, every `--set KEY=a,b` (Hydra's
// multirun). Each axis is a setting path and its values, each value remembering where it was
// written so that the schema's verdict on it is reported there.
import { isObject } from '../ground/json.js';
import type { KindRegistry } from '../stage-kind/registry.js';
import { parseSets, stageNames, typedValue, type Assignment, type PipelineSource } from '../config/load.js';
import { parseKeyPath, parseOverride, splitValues } from '../config/overrides.js';
import { dottedPath } from '../config/problems.js';
import type { Problem } from '../ground/errors.js';

export interface SweepAxis {
  /** Full path from the document root, e.g. ["stages","train","optimizer","lr"]. */
  path: (string | number)[];
  /** The setting as --set names it: "train.optimizer.lr", "seed". */
  setting: string;
  values: { value: unknown; where: string }[];
}

/** Settings that are not part of any stage key: sweeping them would run the same work N times. */
const NOT_SWEPT: Record<string, string> = {
  name: 'every variant of a sweep belongs to one pipeline',
  description: 'it is not part of any stage key',
  runtime: 'runtime settings change how stages run, not what they compute, so they are not part of stage keys',
};

function settingName(path: readonly (string | number)[]): string {
  return dottedPath(path[0] === 'stages' ? path.slice(1) : path);
}

/**
 * The sweep's axes and the plain assignments (--set without a list, or without -m). A `--set` of a
 * setting the file sweeps replaces that axis: the command line wins, as in Hydra.
 */
export function sweepAxes(
  src: PipelineSource,
  registry: KindRegistry,
  sets: readonly string[],
  multirun: boolean,
): { axes: SweepAxis[]; fixed: Assignment[]; problems: Problem[] } {
  const problems: Problem[] = [];
  const axes: SweepAxis[] = [];
  const names = stageNames(src.root);
  const same = (a: readonly (string | number)[], b: readonly (string | number)[]) => dottedPath(a) === dottedPath(b);
  const add = (axis: SweepAxis, where: string) => {
    const head = String(axis.path[0]);
    if (NOT_SWEPT[head]) problems.push({ where, path: axis.setting, message: `cannot be swept: ${NOT_SWEPT[head]}` });
    else if (axes.some((a) => same(a.path, axis.path)))
      problems.push({ where, path: axis.setting, message: 'swept twice' });
    else axes.push(axis);
  };

  const block = src.root.sweep;
  if (isObject(block)) {
    for (const [key, list] of Object.entries(block)) {
      const path = parseKeyPath(key, names);
      const keyWhere = src.locate(['sweep', key], true);
      if (typeof path === 'string') {
        problems.push({ where: keyWhere, path: `sweep.${key}`, message: path });
        continue;
      }
      // A list that is not one, or is empty, is reported by the schema check of the block.
      if (!Array.isArray(list) || list.length === 0) continue;
      add(
        {
          path,
          setting: settingName(path),
          values: list.map((value, i) => ({ value, where: src.locate(['sweep', key, i]) })),
        },
        keyWhere,
      );
    }
  }

  const plain: string[] = [];
  for (const text of sets) {
    const o = parseOverride(text, names);
    const raws = multirun && !('where' in o) ? splitValues(o.raw) : [];
    if ('where' in o || raws.length < 2) {
      plain.push(text);
      continue;
    }
    const i = axes.findIndex((a) => same(a.path, o.path));
    if (i >= 0) axes.splice(i, 1); // the command line's list replaces the file's
    add(
      {
        path: o.path,
        setting: settingName(o.path),
        values: raws.map((raw, n) => ({
          value: typedValue(src, registry, o.path, raw),
          where: `--set ${text} (value ${n + 1}: ${raw})`,
        })),
      },
      `--set ${text}`,
    );
  }
  const { assignments: fixed, problems: setProblems } = parseSets(src, registry, plain);
  problems.push(...setProblems);
  // A fixed value for a swept setting wins over the sweep's list.
  return { axes: axes.filter((a) => !fixed.some((f) => same(f.path, a.path))), fixed, problems };
}
