// Public face of the ViT: model, training helpers, checkpoints and summaries.
export type { VitConfig } from './config.js';
export { tokenCount, validateConfig } from './config.js';
export { Vit, createVit, parameterTable } from './model.js';
export { forward, computeGradients, predict, patchify, softCrossEntropy, clipByGlobalNorm } from './forward.js';
export type { ForwardOptions, GradientResult } from './forward.js';
export { saveCheckpoint, loadCheckpoint, registerVitLayers, fileSystemHandler, readCheckpointMetadata } from './checkpoint.js';
export { modelGraphSvg } from './graph.js';
