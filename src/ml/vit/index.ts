// Public face of the ViT: model, running it, checkpoints and summaries.
export type { Activation, FullVitConfig, VitConfig } from './config.js';
export { completeConfig, tokenCount, validateConfig } from './config.js';
export { Vit, createVit, parameterTable } from './model.js';
export { patchify } from './vit.js';
export {
  forward,
  computeGradients,
  predict,
  softCrossEntropy,
  clipByGlobalNorm,
  describeKernels,
  tfjsKernels,
  referenceKernels,
} from './kernels.js';
export type { ForwardOptions, GradientResult, Kernels } from './kernels.js';
export {
  saveCheckpoint,
  loadCheckpoint,
  registerVitLayers,
  fileSystemHandler,
  readCheckpointMetadata,
} from './checkpoint.js';
export { modelGraphSvg } from './graph.js';
