// Builds the optional native ViT kernels into native/build/vit_kernels.node with the system C++
// compiler and Node's own headers. Meant for package.json "install": it does not fail the install
// (unless TFPIPE_NATIVE_REQUIRED=1, below); without a compiler or headers tfpipe runs on its tfjs kernels.
//
// One build runs on every CPU of its architecture: the model code (src/model.cc) is compiled once
// per variant of native/variants.conf with that variant's flags into its own namespace, and the
// addon picks a variant at load (src/dispatch.cc). Nothing is compiled for the build machine's
// own CPU, so a built node_modules can move to another machine of the same architecture.
//
// Environment: TFPIPE_NATIVE_BUILD=0 skips; CXX picks the compiler; TFPIPE_NATIVE_CFLAGS replaces
// the optimisation flags (default "-O3 -ffp-contract=fast") of every unit, e.g. for a compiler
// that needs others; TFPIPE_NODE_INCLUDE points at node_api.h's folder. TFPIPE_NATIVE_REQUIRED=1
// (CI, where a compiler is installed) turns every "not built" and every variant left out into a
// failure (exit 1), so a broken build cannot pass unnoticed while the tests skip the addon.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { foreignSymbols } from './check-symbols.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const src = join(here, 'src');
const buildDir = join(here, 'build');
const objDir = join(buildDir, 'obj');
const out = join(buildDir, 'vit_kernels.node');
// Units compiled once, without ISA flags (they must run on every CPU of the architecture).
const SHARED = ['addon', 'dispatch', 'pool', 'workspace', 'profile', 'layout', 'loss', 'optimizer'];

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

/** The variants of native/variants.conf for this machine's architecture, best first. */
export function variantsFor(
  arch = process.arch === 'x64' ? 'x86_64' : process.arch === 'arm64' ? 'aarch64' : process.arch,
) {
  const rows = readFileSync(join(here, 'variants.conf'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const [name, a, ...flags] = l.split(/\s+/);
      return { name, arch: a, flags };
    });
  const mine = rows.filter((r) => r.arch === arch);
  return mine.length ? mine : rows.filter((r) => r.arch === 'other');
}

function run(cmd, args) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'inherit', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.on('error', (e) => resolve({ ok: false, err: e.message }));
    child.on('close', (code) => resolve({ ok: code === 0, err }));
  });
}

/** Runs jobs (functions returning promises) with at most `limit` in flight. */
async function pooled(jobs, limit) {
  const results = new Array(jobs.length);
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const i = next++;
      results[i] = await jobs[i]();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, worker));
  return results;
}

const firstLine = (s) => (s.split('\n').find((l) => l.trim()) ?? '').trim();

const required = process.env.TFPIPE_NATIVE_REQUIRED === '1';

/** The addon (or one variant of it) was not built: a note for npm install, a failure where it is required. */
function notBuilt(why) {
  if (!required) return console.log(`tfpipe: ${why}`);
  console.error(`tfpipe: ${why}\ntfpipe: TFPIPE_NATIVE_REQUIRED=1, so this is an error`);
  process.exitCode = 1;
}

async function main() {
  if (process.env.TFPIPE_NATIVE_BUILD === '0') return notBuilt('native kernels skipped (TFPIPE_NATIVE_BUILD=0)');
  const include = nodeIncludeDir();
  if (!include)
    return notBuilt('native kernels not built (Node headers with node_api.h not found); using tfjs kernels');
  const cxx = process.env.CXX || 'g++';
  const opt = (process.env.TFPIPE_NATIVE_CFLAGS || '-O3 -ffp-contract=fast').split(/\s+/).filter(Boolean);
  const common = [...opt, '-std=c++17', '-fPIC', '-pthread', `-I${src}`];
  mkdirSync(objDir, { recursive: true });

  const variants = variantsFor();
  const started = Date.now();
  // The variants first (the slow units), then the small shared ones.
  const jobs = [
    ...variants.map((v) => async () => {
      const obj = join(objDir, `model-${v.name}.o`);
      const r = await run(cxx, [
        ...common,
        '-fno-exceptions',
        ...v.flags,
        `-DTFPIPE_ISA=${v.name}`,
        '-c',
        join(src, 'model.cc'),
        '-o',
        obj,
      ]);
      return { ...v, obj, ...r };
    }),
  ];
  const compiled = await pooled(jobs, availableParallelism());
  const linked = [];
  for (const v of compiled) {
    if (!v.ok) {
      notBuilt(`native ${v.name} kernels not built (${firstLine(v.err)})`);
      continue;
    }
    const foreign = foreignSymbols(v.obj, v.name);
    if (foreign === null) console.log(`tfpipe: nm not found; cannot check the ${v.name} object's symbols`);
    else if (foreign.length) {
      notBuilt(`native ${v.name} kernels left out: they define shared symbols (${foreign.slice(0, 3).join('; ')})`);
      continue;
    }
    linked.push(v);
  }
  if (!linked.length) return notBuilt('native kernels not built (no variant compiled); using tfjs kernels');
  const have = linked.map((v) => `-DTFPIPE_HAVE_${v.name.toUpperCase()}`);
  const shared = await pooled(
    SHARED.map((name) => async () => {
      const obj = join(objDir, `${name}.o`);
      const extra =
        name === 'addon'
          ? [`-I${include}`, '-DNODE_GYP_MODULE_NAME=vit_kernels', '-DNAPI_VERSION=8']
          : name === 'dispatch'
            ? have
            : [];
      return { name, obj, ...(await run(cxx, [...common, ...extra, '-c', join(src, `${name}.cc`), '-o', obj])) };
    }),
    availableParallelism(),
  );
  const failed = shared.find((s) => !s.ok);
  if (failed)
    return notBuilt(`native kernels not built (${failed.name}.cc: ${firstLine(failed.err)}); using tfjs kernels`);
  const tmp = `${out}.${process.pid}.tmp`;
  const link = await run(cxx, [
    ...opt,
    '-shared',
    '-pthread',
    ...shared.map((s) => s.obj),
    ...linked.map((v) => v.obj),
    '-o',
    tmp,
  ]);
  if (!link.ok) {
    rmSync(tmp, { force: true });
    return notBuilt(`native kernels not built (link: ${firstLine(link.err)}); using tfjs kernels`);
  }
  renameSync(tmp, out);
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  console.log(`tfpipe: built native kernels ${out} (variants: ${linked.map((v) => v.name).join(', ')}; ${secs} s)`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((err) =>
    notBuilt(`native kernels not built (${firstLine(String(err?.message ?? err))}); using tfjs kernels`),
  );
}
