import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { JsonObject } from './json.js';

/** The package root (where package.json and schemas/ live), whether running from src or dist. */
export const packageRoot: string = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`tfpipe: cannot find package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
  return dir;
})();

export const schemasDir = join(packageRoot, 'schemas');

/** Read schemas/<name>.schema.json. */
export function readSchema(name: string): JsonObject {
  return JSON.parse(readFileSync(join(schemasDir, `${name}.schema.json`), 'utf8')) as JsonObject;
}
