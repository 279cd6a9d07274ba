// Picks and initialises the tfjs backend. Optional backends (tfjs-node, tfjs-node-gpu) are
// loaded with dynamic import() so that a missing native addon is a clear, catchable error
// instead of a crash at startup.
import * as tf from '@tensorflow/tfjs';

export type BackendName = 'tensorflow-gpu' | 'tensorflow' | 'wasm' | 'cpu';
export type BackendRequest = 'auto' | BackendName;
export interface BackendInfo {
  name: BackendName;
  detail: string;
  /**
   * The CPU backends that loaded, when auto found no GPU. The kernel choice (choose-kernels.ts)
   * measures the paths on each and switches to the fastest; `name` is only where stages start.
   */
  cpuCandidates?: BackendName[];
}

/** Loads one backend and makes it current; rejects when it cannot run here. Injectable for tests. */
export type BackendLoader = (name: BackendName, threads: number) => Promise<void>;

/** Imports an optional package (tfjs-node, tfjs-node-gpu) by name. Injectable for tests. */
export type OptionalImport = (specifier: string) => Promise<unknown>;

// A GPU that really runs comes first; among CPU backends the order only sets where stages start,
// since the kernel choice then picks by measured speed.
const GPU_ORDER: BackendName[] = ['tensorflow-gpu'];
const CPU_ORDER: BackendName[] = ['tensorflow', 'wasm'];

let current: { requested: BackendRequest; threads: number; info: BackendInfo } | undefined;

/** Threads asked for at initBackend (0 = let tfpipe choose). */
export function backendThreads(): number {
  return current?.threads ?? 0;
}

/**
 * Initialise the backend once per process. A backend asked for by name that cannot load throws.
 * 'auto' takes tensorflow-gpu when it loads and really runs on a GPU; otherwise it loads every CPU
 * backend that loads (tensorflow, wasm; cpu only when neither does) and leaves the choice between
 * them to measured speed (choose-kernels.ts). The log says why the others were skipped.
 */
export async function initBackend(
  requested: BackendRequest,
  threads: number,
  loader: BackendLoader = loadBackend,
): Promise<BackendInfo> {
  if (current) {
    if (current.requested === requested || requested === 'auto' || requested === current.info.name) return current.info;
    throw new Error(
      `backend already initialised as "${current.info.name}" in this process; cannot switch to "${requested}"`,
    );
  }
  let info: BackendInfo;
  if (requested === 'auto') {
    const skipped: string[] = [];
    const loaded: BackendName[] = [];
    const tryLoad = async (name: BackendName) => {
      try {
        await loader(name, threads);
        loaded.push(name);
      } catch (err) {
        skipped.push(`${name}: ${firstLine(err)}`);
      }
    };
    for (const name of GPU_ORDER) if (!loaded.length) await tryLoad(name);
    if (!loaded.length) {
      for (const name of CPU_ORDER) await tryLoad(name);
      if (!loaded.length) await tryLoad('cpu');
    }
    if (!loaded.length) throw new Error(`no tfjs backend could be loaded (${skipped.join('; ')})`);
    const chosen = loaded[0];
    // The last loader made its own backend current; start on the first that loaded.
    if (tf.getBackend() !== backendRegistryName(chosen)) await setOrThrow(backendRegistryName(chosen));
    const cpuCandidates = chosen === 'tensorflow-gpu' ? undefined : loaded;
    const also =
      cpuCandidates && cpuCandidates.length > 1
        ? `; also loaded ${cpuCandidates.slice(1).join(', ')} (chosen by measured speed where the ViT runs)`
        : '';
    info = {
      name: chosen,
      detail: describe(chosen, threads) + also + (skipped.length ? `; skipped ${skipped.join('; ')}` : ''),
      ...(cpuCandidates ? { cpuCandidates } : {}),
    };
  } else {
    try {
      await loader(requested, threads);
    } catch (err) {
      throw new Error(`backend "${requested}" was requested but cannot be used: ${firstLine(err)}`);
    }
    info = {
      name: requested,
      detail: describe(requested, threads),
      ...(requested === 'tensorflow-gpu' ? {} : { cpuCandidates: [requested] }),
    };
  }
  current = { requested, threads, info };
  return info;
}

/** The backend initBackend settled on (null before it ran). */
export function backendInfo(): BackendInfo | null {
  return current?.info ?? null;
}

/** tfjs's registry name for a backend (both tfjs-node packages register "tensorflow"). */
export function backendRegistryName(name: BackendName): string {
  return name === 'tensorflow-gpu' ? 'tensorflow' : name;
}

function describe(name: BackendName, threads: number): string {
  if (name === 'wasm') return `wasm (${threads > 0 ? threads : 'default'} thread(s) requested)`;
  if (name === 'cpu') return 'cpu (pure JavaScript, slow)';
  return name === 'tensorflow'
    ? 'tensorflow (libtensorflow CPU via @tensorflow/tfjs-node)'
    : 'tensorflow-gpu (CUDA via @tensorflow/tfjs-node-gpu)';
}

function firstLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split('\n')[0];
}

/** Loads an optional module by name; typed loosely because it may not be installed. */
async function importOptional(specifier: string): Promise<unknown> {
  try {
    return await import(specifier);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      throw new Error(
        `${specifier} is not installed (it is an optional dependency; its native install may have failed)`,
      );
    }
    throw new Error(`${specifier} failed to load: ${firstLine(err)}`);
  }
}

interface NodeBinding {
  isUsingGpuDevice?: () => boolean;
}

export async function loadBackend(
  name: BackendName,
  threads: number,
  importModule: OptionalImport = importOptional,
): Promise<void> {
  switch (name) {
    case 'cpu':
      await setOrThrow('cpu');
      return;
    case 'wasm': {
      const wasm = await import('@tensorflow/tfjs-backend-wasm');
      if (threads > 0) wasm.setThreadsCount(threads);
      await setOrThrow('wasm');
      return;
    }
    case 'tensorflow':
      await importModule('@tensorflow/tfjs-node');
      await setOrThrow('tensorflow');
      return;
    case 'tensorflow-gpu': {
      await importModule('@tensorflow/tfjs-node-gpu');
      await setOrThrow('tensorflow');
      // tfjs-node-gpu quietly runs on the CPU when CUDA/cuDNN do not match its build.
      const binding = (tf.backend() as unknown as { binding?: NodeBinding }).binding;
      const gpu = binding?.isUsingGpuDevice ? binding.isUsingGpuDevice() : false;
      if (!gpu)
        throw new Error('@tensorflow/tfjs-node-gpu loaded but TensorFlow sees no GPU (needs CUDA 11.2 + cuDNN 8.1)');
      return;
    }
  }
}

async function setOrThrow(name: string): Promise<void> {
  const ok = await tf.setBackend(name);
  if (!ok || tf.getBackend() !== name) throw new Error(`tf.setBackend('${name}') failed`);
  await tf.ready();
}
