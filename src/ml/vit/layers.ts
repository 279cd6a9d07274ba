// The ViT as a stock tf.LayersModel built from three custom layer classes, so a checkpoint is an ordinary
// tfjs artefact: register the classes once (registerLayerClasses; checkpoint.ts's registerVitLayers does
// that and adds a file:// router) and tf.loadLayersModel reads it.
// Layers run the same eval-mode math as vit.ts (on the tfjs ops); dropout is a training concern and absent here.
import * as tf from '@tensorflow/tfjs';
import { completeConfig, type FullVitConfig, tokenCount, type VitConfig } from './config.js';
import { evalPieces } from './kernels.js';
import {
  BLOCK_PARAMS,
  blockLayer,
  HEAD_LAYER,
  HEAD_PARAMS,
  type ParamDef,
  presentParams,
  STEM_LAYER,
  STEM_PARAMS,
} from './layout.js';
import type { BlockWeights, HeadWeights, StemWeights } from './vit.js';

type Shape = (number | null)[];

interface VitLayerArgs {
  name?: string;
  inputShape?: Shape;
  trainable?: boolean;
  vit: VitConfig;
}

const zeros = (): tf.serialization.Serializable => tf.initializers.zeros();

abstract class VitLayer extends tf.layers.Layer {
  /** Filled here: a layer is built from the config a checkpoint's model.json holds, which may predate a field. */
  protected readonly vit: FullVitConfig;
  constructor(args: VitLayerArgs) {
    super(args);
    this.vit = completeConfig({ ...args.vit });
  }

  protected weight(name: string, shape: number[]): tf.LayerVariable {
    return this.addWeight(name, shape, 'float32', zeros() as ReturnType<typeof tf.initializers.zeros>);
  }

  /**
   * Adds the weights of one layout.ts definition list that this config has; names give weight
   * paths "<layer>/<name>" = Vit's stable names.
   */
  protected addWeights(defs: readonly ParamDef<string>[]): void {
    for (const d of presentParams(defs, this.vit)) this.weight(d.name, d.shape(this.vit));
  }

  /** The weights keyed as the definition list keys them (absent ones undefined). */
  protected read<K extends string>(defs: readonly ParamDef<K>[]): Partial<Record<K, tf.Tensor>> {
    const values = this.weights.map((w) => w.read());
    return Object.fromEntries(presentParams(defs, this.vit).map((d, i) => [d.key, values[i]])) as Partial<
      Record<K, tf.Tensor>
    >;
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), vit: { ...this.vit } };
  }
}

/** [B, H, W, C] images -> [B, T, dim]: tokenizer, class token, positions. */
export class VitEmbedding extends VitLayer {
  static className = 'VitEmbedding';
  override build(): void {
    this.addWeights(STEM_PARAMS);
    this.built = true;
  }
  override computeOutputShape(inputShape: Shape): Shape {
    return [inputShape[0], tokenCount(this.vit).tokens, this.vit.dim];
  }
  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    const x = (Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor4D;
    return evalPieces.embed(this.vit, x, this.read(STEM_PARAMS) as StemWeights);
  }
}

/** One pre-LN transformer block: [B, T, dim] -> [B, T, dim]. */
export class VitBlock extends VitLayer {
  static className = 'VitBlock';
  override build(): void {
    this.addWeights(BLOCK_PARAMS);
    this.built = true;
  }
  override computeOutputShape(inputShape: Shape): Shape {
    return inputShape;
  }
  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    const x = (Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor3D;
    return evalPieces.block(this.vit, x, this.read(BLOCK_PARAMS) as BlockWeights);
  }
}

/** [B, T, dim] -> logits [B, classes]: pooling (class token, mean or sequence pooling), LayerNorm, Linear. */
export class VitHead extends VitLayer {
  static className = 'VitHead';
  override build(): void {
    this.addWeights(HEAD_PARAMS);
    this.built = true;
  }
  override computeOutputShape(inputShape: Shape): Shape {
    return [inputShape[0], this.vit.classes];
  }
  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    const x = (Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor3D;
    return evalPieces.head(this.vit, x, this.read(HEAD_PARAMS) as HeadWeights);
  }
}

let registered = false;

/** Registers the ViT layer classes with tfjs (checkpoint.ts's registerVitLayers is the public entry). */
export function registerLayerClasses(): void {
  if (registered) return;
  registered = true;
  for (const cls of [VitEmbedding, VitBlock, VitHead]) tf.serialization.registerClass(cls);
}

/** The Layers-model skeleton for a config (zero weights). Layer names fix the weight paths. */
export function buildVitLayersModel(cfg: VitConfig): tf.Sequential {
  registerLayerClasses();
  const model = tf.sequential({ name: 'vit' });
  model.add(new VitEmbedding({ name: STEM_LAYER, inputShape: [cfg.imageSize, cfg.imageSize, cfg.channels], vit: cfg }));
  for (let i = 0; i < cfg.depth; i++) model.add(new VitBlock({ name: blockLayer(i), vit: cfg }));
  model.add(new VitHead({ name: HEAD_LAYER, vit: cfg }));
  return model;
}
