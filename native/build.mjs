// Builds the optional native ViT kernels (native/vit_kernels.cc -> native/build/vit_kernels.node)
// with the system C++ compiler and Node's own headers. Meant for package.json "install": it never
// fails the install; without a compiler or headers tfpipe simply runs on its tfjs kernels.
// Set TFPIPE_NATIVE_BUILD=0 to skip, CXX / TFPIPE_NATIVE_CFLAGS to override compiler and flags.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, 'build', 'vit_kernels.node');

function nodeIncludeDir() {
  const candidates = [
    process.env.TFPIPE_NODE_INCLUDE,
    join(dirname(dirname(process.execPath)), 'include', 'node'),
    process.config?.variables?.node_prefix ? join(process.config.variables.node_prefix, 'include', 'node') : undefined,
    '/usr/include/node',
    '/usr/local/include/node',
  ];
  return candidates.find((d) => d && existsSync(join(d, 'node_api.h')));
}

function main() {
  if (process.env.TFPIPE_NATIVE_BUILD === '0') return console.log('tfpipe: native kernels skipped (TFPIPE_NATIVE_BUILD=0)');
  const include = nodeIncludeDir();
  if (!include) return console.log('tfpipe: native kernels not built (Node headers with node_api.h not found); using tfjs kernels');
  const cxx = process.env.CXX || 'g++';
  // -march=native: the addon is built on the machine that runs it, so use its full vector width.
  const flags = (process.env.TFPIPE_NATIVE_CFLAGS || '-O3 -march=native -ffp-contract=fast').split(/\s+/).filter(Boolean);
  mkdirSync(dirname(out), { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  try {
    execFileSync(cxx, [...flags, '-std=c++17', '-shared', '-fPIC', '-pthread', `-I${include}`, '-DNODE_GYP_MODULE_NAME=vit_kernels',
      '-DNAPI_VERSION=8', join(here, 'vit_kernels.cc'), '-o', tmp], { stdio: ['ignore', 'inherit', 'inherit'] });
    renameSync(tmp, out);
    console.log(`tfpipe: built native kernels ${out}`);
  } catch (err) {
    console.log(`tfpipe: native kernels not built (${err.message.split('\n')[0]}); using tfjs kernels`);
  }
}

main();
