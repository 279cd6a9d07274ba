// npm runs a dependency's install script only where package.json's allowScripts allows it (a
// stricter npm skips the rest, silently but for a warning). Every package in the lock file that has
// one must be decided there, so that none is skipped by accident.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { packageRoot } from '../src/ground/paths.js';

const read = (file: string) => JSON.parse(readFileSync(join(packageRoot, file), 'utf8'));

test('every dependency with an install script is allowed or denied in package.json allowScripts', () => {
  const lock = read('package-lock.json') as { packages: Record<string, { hasInstallScript?: boolean }> };
  const withScripts = Object.entries(lock.packages)
    .filter(([path, p]) => path !== '' && p.hasInstallScript)
    .map(([path]) => path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length));
  assert.ok(withScripts.includes('sharp'), 'the lock file lists install scripts');
  const allow = read('package.json').allowScripts as Record<string, boolean>;
  assert.deepEqual([...new Set(withScripts)].sort(), Object.keys(allow).sort());
  // What they do decides: sharp, msgpackr-extract and the tfjs-node packages fetch or build native
  // code tfpipe uses; core-js's postinstall only prints a funding banner.
  assert.deepEqual(
    Object.entries(allow)
      .filter(([, ok]) => !ok)
      .map(([name]) => name),
    ['core-js'],
  );
});
