// Picks and initialises the tfjs backend. Optional backends (tfjs-node, tfjs-node-gpu) are
// loaded with dynamic import() so that a missing native addon is a clear, catchable error
// instead of a crash at startup.
import * as tf from '@tensorflow/tfjs';

export type BackendName = 'tensorflow-gpu' | 'tensorflow' | 'wasm' | 'cpu';
export type BackendRequest = 'auto' | BackendName;
export interface BackendInfo {
  name: BackendName;
  detail: string;
}

const AUTO_ORDER: BackendName[] = ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'];

let current: { requested: BackendRequest; threads: number; info: BackendInfo } | undefined;

/** Threads asked for at initBackend (0 = let tfpipe choose). */
export function backendThreads(): number {
  return current?.threads ?? 0;
}

/**
 * Initialise the backend once per process. A backend asked for by name that cannot load throws;
 * 'auto' takes the first of tensorflow-gpu, tensorflow, wasm, cpu that loads and says why the
 * others were skipped.
 */
export async function initBackend(requested: BackendRequest, threads: number): Promise<BackendInfo> {
  if (current) {
    if (current.requested === requested || requested === 'auto' || requested === current.info.name) return current.info;
    throw new Error(
      `backend already initialised as "${current.info.name}" in this process; cannot switch to "${requested}"`,
    );
  }
  let info: BackendInfo;
  if (requested === 'auto') {
    const skipped: string[] = [];
    let chosen: BackendName | undefined;
    for (const name of AUTO_ORDER) {
      try {
        await loadBackend(name, threads);
        chosen = name;
        break;
      } catch (err) {
        skipped.push(`${name}: ${firstLine(err)}`);
      }
    }
    if (!chosen) throw new Error(`no tfjs backend could be loaded (${skipped.join('; ')})`);
    info = { name: chosen, detail: describe(chosen, threads) + (skipped.length ? `; skipped ${skipped.join('; ')}` : '') };
  } else {
    try {
      await loadBackend(requested, threads);
    } catch (err) {
      throw new Error(`backend "${requested}" was requested but cannot be used: ${firstLine(err)}`);
    }
    info = { name: requested, detail: describe(requested, threads) };
  }
  current = { requested, threads, info };
  return info;
}

function describe(name: BackendName, threads: number): string {
  if (name === 'wasm') return `wasm (${threads > 0 ? threads : 'default'} thread(s) requested)`;
  if (name === 'cpu') return 'cpu (pure JavaScript, slow)';
  return name === 'tensorflow' ? 'tensorflow (libtensorflow CPU via @tensorflow/tfjs-node)' : 'tensorflow-gpu (CUDA via @tensorflow/tfjs-node-gpu)';
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
      throw new Error(`${specifier} is not installed (it is an optional dependency; its native install may have failed)`);
    }
    throw new Error(`${specifier} failed to load: ${firstLine(err)}`);
  }
}

interface NodeBinding {
  isUsingGpuDevice?: () => boolean;
}

async function loadBackend(name: BackendName, threads: number): Promise<void> {
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
      await importOptional('@tensorflow/tfjs-node');
      await setOrThrow('tensorflow');
      return;
    case 'tensorflow-gpu': {
      await importOptional('@tensorflow/tfjs-node-gpu');
      await setOrThrow('tensorflow');
      // tfjs-node-gpu quietly runs on the CPU when CUDA/cuDNN do not match its build.
      const binding = (tf.backend() as unknown as { binding?: NodeBinding }).binding;
      const gpu = binding?.isUsingGpuDevice ? binding.isUsingGpuDevice() : false;
      if (!gpu) throw new Error('@tensorflow/tfjs-node-gpu loaded but TensorFlow sees no GPU (needs CUDA 11.2 + cuDNN 8.1)');
      return;
    }
  }
}

async function setOrThrow(name: string): Promise<void> {
  const ok = await tf.setBackend(name);
  if (!ok || tf.getBackend() !== name) throw new Error(`tf.setBackend('${name}') failed`);
  await tf.ready();
}
