// The ViT as a stock tf.LayersModel built from four custom layers, so a checkpoint is an ordinary
// tfjs artefact: register the classes once (registerVitLayers) and tf.loadLayersModel reads it.
// Layers run the same eval-mode math as forward.ts; dropout is a training concern and absent here.
import * as tf from '@tensorflow/tfjs';
import { tokenCount, type VitConfig } from './config.js';
import { evalPieces, type BlockWeights, type StemWeights } from './forward.js';

type Shape = (number | null)[];

interface VitLayerArgs {
  name?: string;
  inputShape?: Shape;
  trainable?: boolean;
  vit: VitConfig;
}

const zeros = (): tf.serialization.Serializable => tf.initializers.zeros();

abstract class VitLayer extends tf.layers.Layer {
  protected readonly vit: VitConfig;
  constructor(args: VitLayerArgs) {
    super(args);
    this.vit = { ...args.vit };
  }

  protected weight(name: string, shape: number[]): tf.LayerVariable {
    return this.addWeight(name, shape, 'float32', zeros() as ReturnType<typeof tf.initializers.zeros>);
  }

  protected read(): tf.Tensor[] {
    return this.weights.map((w) => w.read());
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), vit: { ...this.vit } };
  }
}

/** [B, H, W, C] images -> [B, T, dim]: patches, patch embedding, class token, positions. */
export class VitEmbedding extends VitLayer {
  static className = 'VitEmbedding';
  override build(): void {
    const { patchDim, tokens } = tokenCount(this.vit);
    // Names give weight paths "<layer>/<name>", equal to Vit's stable parameter names.
    this.weight('patch/kernel', [patchDim, this.vit.dim]);
    this.weight('patch/bias', [this.vit.dim]);
    this.weight('cls_token', [1, this.vit.dim]);
    this.weight('pos_embedding', [tokens, this.vit.dim]);
    this.built = true;
  }
  override computeOutputShape(inputShape: Shape): Shape {
    return [inputShape[0], tokenCount(this.vit).tokens, this.vit.dim];
  }
  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    const x = (Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor4D;
    const [patchW, patchB, clsToken, posEmbedding] = this.read();
    return evalPieces.embed(this.vit, x, { patchW, patchB, clsToken, posEmbedding } as StemWeights);
  }
}

const BLOCK_WEIGHTS: [keyof BlockWeights, string][] = [
  ['attnNormGamma', 'attn_norm/gamma'],
  ['attnNormBeta', 'attn_norm/beta'],
  ['toQ', 'attn/to_q'],
  ['toK', 'attn/to_k'],
  ['toV', 'attn/to_v'],
  ['toOutW', 'attn/to_out/kernel'],
  ['toOutB', 'attn/to_out/bias'],
  ['mlpNormGamma', 'mlp_norm/gamma'],
  ['mlpNormBeta', 'mlp_norm/beta'],
  ['fc1W', 'mlp/fc1/kernel'],
  ['fc1B', 'mlp/fc1/bias'],
  ['fc2W', 'mlp/fc2/kernel'],
  ['fc2B', 'mlp/fc2/bias'],
];

/** One pre-LN transformer block: [B, T, dim] -> [B, T, dim]. */
export class VitBlock extends VitLayer {
  static className = 'VitBlock';
  override build(): void {
    const { dim, heads, dimHead, mlpDim } = this.vit;
    const inner = heads * dimHead;
    const shapes: Record<string, number[]> = {
      'attn_norm/gamma': [dim], 'attn_norm/beta': [dim], 'attn/to_q': [dim, inner], 'attn/to_k': [dim, inner], 'attn/to_v': [dim, inner],
      'attn/to_out/kernel': [inner, dim], 'attn/to_out/bias': [dim], 'mlp_norm/gamma': [dim], 'mlp_norm/beta': [dim],
      'mlp/fc1/kernel': [dim, mlpDim], 'mlp/fc1/bias': [mlpDim], 'mlp/fc2/kernel': [mlpDim, dim], 'mlp/fc2/bias': [dim],
    };
    for (const [, name] of BLOCK_WEIGHTS) this.weight(name, shapes[name]);
    this.built = true;
  }
  override computeOutputShape(inputShape: Shape): Shape {
    return inputShape;
  }
  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    const x = (Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor3D;
    const values = this.read();
    const w = Object.fromEntries(BLOCK_WEIGHTS.map(([key], i) => [key, values[i]])) as BlockWeights;
    return evalPieces.block(this.vit, x, w);
  }
}

/** [B, T, dim] -> logits [B, classes] from the class token: LayerNorm then Linear. */
export class VitHead extends VitLayer {
  static className = 'VitHead';
  override build(): void {
    this.weight('norm/gamma', [this.vit.dim]);
    this.weight('norm/beta', [this.vit.dim]);
    this.weight('kernel', [this.vit.dim, this.vit.classes]);
    this.weight('bias', [this.vit.classes]);
    this.built = true;
  }
  override computeOutputShape(inputShape: Shape): Shape {
    return [inputShape[0], this.vit.classes];
  }
  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    const x = (Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor3D;
    const [headNormGamma, headNormBeta, headW, headB] = this.read();
    return evalPieces.head(this.vit, x, { headNormGamma, headNormBeta, headW, headB } as StemWeights);
  }
}

let registered = false;

/** Registers the ViT layer classes with tfjs; call before tf.loadLayersModel on a tfpipe checkpoint. */
export function registerVitLayers(): void {
  if (registered) return;
  registered = true;
  for (const cls of [VitEmbedding, VitBlock, VitHead]) tf.serialization.registerClass(cls);
}

/** The Layers-model skeleton for a config (zero weights). Layer names fix the weight paths. */
export function buildVitLayersModel(cfg: VitConfig): tf.Sequential {
  registerVitLayers();
  const model = tf.sequential({ name: 'vit' });
  model.add(new VitEmbedding({ name: 'embedding', inputShape: [cfg.imageSize, cfg.imageSize, cfg.channels], vit: cfg }));
  for (let i = 0; i < cfg.depth; i++) model.add(new VitBlock({ name: `block_${i}`, vit: cfg }));
  model.add(new VitHead({ name: 'head', vit: cfg }));
  return model;
}
