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
// that needs others; TFPIPE_NODE_INCLUDE points at node_api.h's folder; TFPIPE_NATIVE_BUILD_DIR
// builds elsewhere than native/build (e.g. a second build to test, named by TFPIPE_NATIVE_ADDON).
// TFPIPE_NATIVE_REQUIRED=1 (CI, where a compiler is installed) turns every "not built" and every
// variant left out into a failure (exit 1), so a broken build cannot pass unnoticed while the
// tests skip the addon.
//
// The GPU model (native/cuda/): its host executor (host_exec.cc) is always built. Where nvcc is
// found (NVCC, else PATH) and TFPIPE_CUDA_BUILD is not 0, the CUDA units (device_exec.cu and
// gemm_check.cu around the executor of device_exec.cuh, for the GPUs of cuda/targets.conf or the
// -gencode flags of TFPIPE_CUDA_ARCH) compile alongside the CPU variants and nvcc links the addon
// with the CUDA runtime built in (cuBLASLt is loaded at run time, cublaslt.cc); otherwise, or when
// nvcc fails, cuda/no_device.cc stands in, one line says why, and the addon reports it (gpuInfo()).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { foreignSymbols } from './check-symbols.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const src = join(here, 'src');
const cudaDir = join(here, 'cuda');
const buildDir = process.env.TFPIPE_NATIVE_BUILD_DIR
  ? resolve(process.env.TFPIPE_NATIVE_BUILD_DIR)
  : join(here, 'build');
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

// Compilers still running; main() stops them when it gives up early.
const running = new Set();

function run(cmd, args) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'inherit', 'pipe'] });
    running.add(child);
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.on('error', (e) => resolve({ ok: false, err: e.message }));
    child.on('close', (code) => {
      running.delete(child);
      resolve({ ok: code === 0, err });
    });
  });
}

/**
 * nvcc's path, or why the CUDA kernels are not built (`why` for the build's log, `note` for the
 * addon's own messages).
 */
function findNvcc() {
  if (process.env.TFPIPE_CUDA_BUILD === '0')
    return { why: 'TFPIPE_CUDA_BUILD=0', note: 'native/ was built with TFPIPE_CUDA_BUILD=0' };
  const note = 'nvcc was not found when native/ was built';
  const name = process.env.NVCC || 'nvcc';
  if (name.includes('/')) return existsSync(name) ? { nvcc: name } : { why: `NVCC=${name} not found`, note };
  const dirs = (process.env.PATH ?? '').split(delimiter).filter(Boolean);
  const dir = dirs.find((d) => existsSync(join(d, name)));
  return dir ? { nvcc: join(dir, name) } : { why: `${name} not found on PATH; set NVCC to build them`, note };
}

/** The -gencode flags: TFPIPE_CUDA_ARCH, else native/cuda/targets.conf. */
function cudaArch() {
  const text =
    process.env.TFPIPE_CUDA_ARCH ??
    readFileSync(join(cudaDir, 'targets.conf'), 'utf8')
      .split('\n')
      .filter((l) => !l.trim().startsWith('#'))
      .join(' ');
  return text.split(/\s+/).filter(Boolean);
}

// The CUDA units: the executor with the device probe and the trainer's factory, and the check of
// cuBLASLt through the executor's row-major mapping (both include cuda/device_exec.cuh).
const CUDA_UNITS = ['device_exec', 'gemm_check'];

/** Starts compiling the CUDA units; resolves to { objs, targets } or { why }. */
async function compileCuda(objDir) {
  const found = findNvcc();
  if (!found.nvcc) return found;
  const arch = cudaArch();
  const objs = [];
  // One after another (nvcc is the heaviest compiler here), stopping at the first that fails.
  for (const name of CUDA_UNITS) {
    const obj = join(objDir, `${name}.o`);
    const args = ['-O3', '-std=c++17', '-Xcompiler', '-fPIC', ...arch, '-c', join(cudaDir, `${name}.cu`), '-o', obj];
    const r = await run(found.nvcc, args);
    if (!r.ok) {
      console.log(
        `tfpipe: CUDA kernels not built (nvcc, ${name}.cu: ${firstLine(r.err)}); the addon is built without them`,
      );
      return { failed: true, note: `nvcc failed on ${name}.cu when native/ was built` };
    }
    objs.push(obj);
  }
  const targets = arch.filter((a) => a.startsWith('arch=')).map((a) => a.replace(/.*code=/, ''));
  return { nvcc: found.nvcc, objs, targets };
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
  // nvcc, the slowest unit, runs alongside the CPU variants.
  const cudaBuild = compileCuda(objDir);
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
  let cuda = await cudaBuild;
  if (!cuda.objs && !cuda.failed) console.log(`tfpipe: CUDA kernels skipped (${cuda.why})`);
  const napi = [`-I${include}`, '-DNODE_GYP_MODULE_NAME=vit_kernels', '-DNAPI_VERSION=8'];
  const unit =
    (name, extra = [], dir = src) =>
    async () => {
      const obj = join(objDir, `${name}.o`);
      return { name, obj, ...(await run(cxx, [...common, ...extra, '-c', join(dir, `${name}.cc`), '-o', obj])) };
    };
  // What depends on whether the CUDA executor is linked: the GPU glue (told so, or why not, for
  // gpuInfo()) and cuBLASLt's loader or the executor's stand-in.
  const gpuUnits = (c) => [
    unit('addon_gpu', [...napi, ...(c.objs ? ['-DTFPIPE_CUDA_KERNELS'] : [`-DTFPIPE_CUDA_SKIPPED="${c.note}"`])]),
    unit(c.objs ? 'cublaslt' : 'no_device', [], cudaDir),
  ];
  const cpuUnits = [
    ...SHARED.map((name) => unit(name, [...(name === 'addon' ? napi : []), ...(name === 'dispatch' ? have : [])])),
    unit('napi_util', napi),
    unit('addon_optimizer', napi),
    unit('host_exec', [], cudaDir), // the GPU model on host loops: plain C++, always built
  ];
  const shared = await pooled([...cpuUnits, ...gpuUnits(cuda)], availableParallelism());
  const failed = shared.find((s) => !s.ok);
  if (failed)
    return notBuilt(`native kernels not built (${failed.name}.cc: ${firstLine(failed.err)}); using tfjs kernels`);
  const tmp = `${out}.${process.pid}.tmp`;
  const cpuObjects = [...shared.slice(0, cpuUnits.length), ...linked].map((u) => u.obj);
  let link;
  if (cuda.objs) {
    const gpuObjects = [...shared.slice(cpuUnits.length).map((u) => u.obj), ...cuda.objs];
    const args = [
      '-shared',
      '-cudart',
      'static',
      '-Xcompiler',
      '-pthread',
      ...cpuObjects,
      ...gpuObjects,
      '-ldl',
      '-o',
      tmp,
    ];
    link = await run(cuda.nvcc, args);
    if (!link.ok) {
      console.log(
        `tfpipe: CUDA kernels not built (nvcc link: ${firstLine(link.err)}); the addon is built without them`,
      );
      cuda = { note: 'the nvcc link failed when native/ was built' };
    }
  }
  if (!cuda.objs) {
    const gpu = link ? await pooled(gpuUnits(cuda), availableParallelism()) : shared.slice(cpuUnits.length);
    const bad = gpu.find((s) => !s.ok);
    if (bad) return notBuilt(`native kernels not built (${bad.name}.cc: ${firstLine(bad.err)}); using tfjs kernels`);
    link = await run(cxx, [...opt, '-shared', '-pthread', ...cpuObjects, ...gpu.map((u) => u.obj), '-o', tmp]);
  }
  if (!link.ok) {
    rmSync(tmp, { force: true });
    return notBuilt(`native kernels not built (link: ${firstLine(link.err)}); using tfjs kernels`);
  }
  renameSync(tmp, out);
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  const gpu = cuda.objs ? `CUDA kernels for ${cuda.targets.join(', ')}` : 'no CUDA kernels';
  console.log(
    `tfpipe: built native kernels ${out} (variants: ${linked.map((v) => v.name).join(', ')}; ${gpu}; ${secs} s)`,
  );
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main()
    .catch((err) =>
      notBuilt(`native kernels not built (${firstLine(String(err?.message ?? err))}); using tfjs kernels`),
    )
    .finally(() => {
      for (const child of running) child.kill();
    });
}
