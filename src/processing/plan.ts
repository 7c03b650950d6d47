/**
 * What a model takes and answers beyond tensors, decided once from its export folder
 * (preprocessor_config.json, tokenizer.json, config.json) and the config's `model.preprocess` and
 * `model.postprocess`, which win field by field. The plan is plain data: it travels to worker
 * threads and into the image as it is.
 */
import type { PostprocessConfig, PreprocessConfig } from '../config/schema.js';
import { inputError, MlopsError, shownValue } from '../errors.js';
import type { Datatype } from '../model/datatypes.js';
import { BadRequest as BadRequestText } from '../protocol/request.js';
import { stat } from 'node:fs/promises';
import { modelFileInFolder } from '../model/model-file.js';
import type { ServableTensor, Tensors } from '../model/session.js';

/** What planning needs of a tensor: a served model's, or a remote server's metadata. */
type Signature = Pick<ServableTensor, 'name' | 'datatype' | 'shape'> & { anyShape?: boolean };
import { readModelFolder, type FolderFile, type ModelFolder } from './folder.js';
import { IMAGE_FORMATS, imagesToTensor, pilResample, type ImageFacts, type ImageSettings, type Resample, type ResizeRule } from './image.js';
import type { LabelSettings, ScoreFunction } from './labels.js';
import { TextTokenizer, type TextFacts, type TextInputs, type TextSettings } from './text.js';

/** `model.preprocess` and `model.postprocess` in mlops.config.json: each field overrides the folder's. */
export interface ProcessingOverrides {
  preprocess?: PreprocessConfig;
  postprocess?: PostprocessConfig;
}

export interface TextPlan {
  settings: TextSettings;
  tokenizerJson: object;
  tokenizerConfig: Record<string, unknown>;
}

export interface ProcessingPlan {
  image?: ImageSettings;
  text?: TextPlan;
  labels?: LabelSettings;
  /** Why a folder's file was not used (a model input a tokenizer cannot fill, an output that is no classifier's): the model still takes tensors. */
  notes: string[];
  /** The export folder's files used, for the image's labels and SBOM. */
  files: Pick<FolderFile, 'name' | 'path' | 'sha256' | 'sizeBytes'>[];
}

/** The raw input a plan takes, if any. */
export const rawInputKind = (plan: ProcessingPlan | undefined): 'image' | 'text' | undefined => (plan?.image ? 'image' : plan?.text ? 'text' : undefined);

/** The file `mlops build` writes beside an image's model: the config's model.preprocess and model.postprocess. */
export const PROCESSING_FILE = 'mlops.processing.json';

export const IMAGE_DEFAULTS = { maxBytes: 16 * 2 ** 20, maxPixels: 50_000_000, alpha: 'white' as const };
export const TEXT_DEFAULTS = { maxBytes: 64 * 1024, truncation: 'truncate' as const };

const IMAGENET_STANDARD = { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };
const IMAGENET_DEFAULT = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
const CLIP = { mean: [0.48145466, 0.4578275, 0.40821073], std: [0.26862954, 0.26130258, 0.27577711] };
/** Each processor type's defaults where its preprocessor_config.json leaves a field out (transformers' own). */
function processorDefaults(type: string): { mean: number[]; std: number[]; resample: Resample; size: ResizeRule } {
  if (/^(ViT|DeiT|BEiT|Swin|Dinov2|Segformer|Siglip)/i.test(type)) {
    return {
      ...(/^(DeiT|Dinov2)/i.test(type) ? IMAGENET_DEFAULT : IMAGENET_STANDARD),
      resample: /^DeiT|Dinov2/i.test(type) ? 'bicubic' : 'bilinear',
      size: { height: 224, width: 224 },
    };
  }
  if (/^(CLIP|Chinese)/i.test(type)) return { ...CLIP, resample: 'bicubic', size: { shortestEdge: 224 } };
  if (/^ConvNext/i.test(type)) return { ...IMAGENET_DEFAULT, resample: 'bicubic', size: { shortestEdge: 384 } };
  return { ...IMAGENET_DEFAULT, resample: 'bilinear', size: { shortestEdge: 224 } };
}

const FLOAT_OR_BYTE = new Set<Datatype>(['FP32', 'FP16', 'FP64', 'UINT8']);
const TOKEN_TYPES = new Set<Datatype>(['INT64', 'INT32']);

/** Errors that say the model cannot take what its folder suggests (not that a file is wrong): notes unless the config asked. */
const NOT_FILLABLE = new WeakSet<MlopsError>();
function notFillable(message: string, hint?: string): MlopsError {
  const error = inputError(message, hint);
  NOT_FILLABLE.add(error);
  return error;
}

/** HF's `size` in any of its spellings (`{height, width}`, `{shortest_edge}`, a number). */
function readSize(size: unknown, cropPct: unknown, where: string): ResizeRule | undefined {
  if (size === undefined || size === null) return undefined;
  const pixels = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v > 0;
  if (pixels(size)) return { height: size as number, width: size as number };
  const s = (typeof size === 'object' ? size : {}) as Record<string, unknown>;
  if (cropPct !== undefined && cropPct !== null && !(typeof cropPct === 'number' && cropPct > 0 && cropPct <= 1))
    throw inputError(`${where}: "crop_pct" is ${JSON.stringify(cropPct)}; expected a share above 0, at most 1`);
  if (pixels(s.height) && pixels(s.width)) return { height: s.height as number, width: s.width as number };
  if (pixels(s.shortest_edge) && (s.longest_edge === undefined || pixels(s.longest_edge))) {
    return {
      shortestEdge: s.shortest_edge as number,
      ...(pixels(s.longest_edge) ? { longestEdge: s.longest_edge as number } : {}),
      ...(typeof cropPct === 'number' ? { cropPct } : {}),
    };
  }
  if (pixels(s.longest_edge) && s.shortest_edge === undefined && s.height === undefined) return { longestEdge: s.longest_edge as number };
  throw inputError(
    `${where}: "size" is ${JSON.stringify(size)}; expected whole numbers of pixels above 0: {"height", "width"}, {"shortest_edge"} or {"longest_edge"}`,
    'fix the file, or set model.preprocess.image.resize',
  );
}

const isPositive = (n: unknown): n is number => typeof n === 'number' && Number.isFinite(n) && n > 0;

/** PIL's resampling number, refused when it names none. */
function knownResample(value: unknown, where: string): Resample | undefined {
  if (value === undefined || value === null) return undefined;
  const known = pilResample(value);
  if (!known)
    throw inputError(
      `${where}: "resample" is ${JSON.stringify(value)}; expected one of PIL's filters 0 (nearest) to 5 (hamming)`,
      'fix the file, or set model.preprocess.image.resample',
    );
  return known;
}

function rescaleOf(value: unknown, where: string): number {
  if (value === undefined || value === null) return 1 / 255;
  if (!isPositive(value))
    throw inputError(
      `${where}: "rescale_factor" is ${JSON.stringify(value)}; expected a number above 0 (1/255 for 8-bit pixels)`,
      'fix the file, or set model.preprocess.image.rescaleFactor',
    );
  return value;
}

/**
 * Whether a folder's preprocessor_config.json is an image processor's: one of a text model (a
 * Wav2Vec2 feature extractor, say) has no image fields.
 */
function isImageProcessor(file: FolderFile | undefined, json: Record<string, unknown>): boolean {
  return (
    file !== undefined &&
    ('image_processor_type' in json ||
      'image_mean' in json ||
      'do_resize' in json ||
      'crop_size' in json ||
      (/ImageProcessor|FeatureExtractor/.test(shownValue(json.feature_extractor_type ?? '')) && 'size' in json))
  );
}

/** The one model input images fill: the one named (or pixel_values), else the only rank-4 float or byte input; refused when the model takes anything else too. */
function imageInputOf(inputs: Signature[], named: string | undefined, where: string): Signature {
  const candidates = inputs.filter((s) => !s.anyShape && s.shape.length === 4 && FLOAT_OR_BYTE.has(s.datatype));
  const input = named ? inputs.find((s) => s.name === named) : candidates.length === 1 ? candidates[0] : undefined;
  if (!input) {
    throw notFillable(
      `${where}: no model input to fill with images: ${named ? `the model has no input '${named}'` : `expected one input of rank 4 (N, C, H, W or N, H, W, C), found ${candidates.length}`}`,
      'name it in model.preprocess.image.input',
    );
  }
  if (input.shape.length !== 4 || !FLOAT_OR_BYTE.has(input.datatype))
    throw notFillable(`${where}: input '${input.name}' is ${input.datatype} [${input.shape.join(', ')}]; images fill an FP32, FP16 or UINT8 input of rank 4`);
  const others = inputs.filter((s) => s !== input);
  if (others.length > 0)
    throw notFillable(
      `${where}: the model also takes ${others.map((s) => `'${s.name}'`).join(', ')}, which an image cannot fill`,
      'send tensors to this model, or export it with the image as its only input',
    );
  return input;
}

/** The layout, channels, height and width a rank-4 image input's shape says (height and width 0 or below when dynamic). */
function imageGeometry(shape: number[]): Pick<ImageSettings, 'layout' | 'channels'> & { height: number; width: number } {
  // Channels first when dimension 1 is 1 or 3 and the last is not; else channels last.
  const [, d1, d2, d3] = shape;
  const layout: 'NCHW' | 'NHWC' = (d1 === 1 || d1 === 3) && !(d3 === 1 || d3 === 3) ? 'NCHW' : d3 === 1 || d3 === 3 ? 'NHWC' : 'NCHW';
  const channelDim = layout === 'NCHW' ? d1 : d3;
  const height = layout === 'NCHW' ? d2 : d1;
  const width = layout === 'NCHW' ? d3 : d2;
  return { layout, channels: channelDim === 1 ? 1 : 3, height, width };
}

/** The processor's type, whose defaults fill what its file leaves out. */
function processorType(json: Record<string, unknown>): string {
  // Older exports name a feature extractor (ViTFeatureExtractor) where newer ones name an image processor.
  return typeof json.image_processor_type === 'string'
    ? json.image_processor_type
    : typeof json.feature_extractor_type === 'string'
      ? json.feature_extractor_type
      : '';
}

/** image_mean or image_std: a number or one per channel, else the processor's default. */
function channelNumbers(value: unknown, field: string, fallback: number[], where: string): number[] {
  if (value === undefined || value === null) return fallback;
  const list = Array.isArray(value) ? value : [value];
  if (list.length === 0 || list.some((n) => typeof n !== 'number' || !Number.isFinite(n)))
    throw inputError(
      `${where}: "${field}" is ${JSON.stringify(value)}; expected numbers, one per channel`,
      'fix the file, or set model.preprocess.image.normalize',
    );
  return list as number[];
}

/** model.preprocess.image: each field wins over the folder's. */
type ImageOverrides = NonNullable<NonNullable<ProcessingOverrides['preprocess']>['image']>;

/** The resize and the centre crop: the file's (with the processor's defaults and the input's fixed size), each overridden by the config's. */
function resizeAndCrop(
  json: Record<string, unknown>,
  fixed: { height: number; width: number },
  defaults: { size: ResizeRule },
  overrides: ImageOverrides | undefined,
  where: string,
): Pick<ImageSettings, 'resize' | 'centerCrop'> {
  const { height, width } = fixed;
  const size = readSize(json.size, json.crop_pct, where);
  const doResize = json.do_resize !== false;
  let resize: ResizeRule | null = doResize ? (size ?? (height > 0 && width > 0 ? { height, width } : defaults.size)) : null;
  const crop = json.do_center_crop === true ? (readSize(json.crop_size, undefined, where) ?? (height > 0 && width > 0 ? { height, width } : null)) : null;
  let centerCrop = crop && 'height' in crop ? crop : null;
  if (overrides?.resize !== undefined) resize = overrides.resize;
  if (overrides?.centerCrop !== undefined) centerCrop = overrides.centerCrop;
  return { resize, centerCrop };
}

function imagePlan(folder: ModelFolder, inputs: Signature[], overrides: ImageOverrides | undefined): ImageSettings | undefined {
  const file = folder.files['preprocessor_config.json'];
  const json = file?.json ?? {};
  if (!isImageProcessor(file, json) && !overrides) return undefined;
  const where = file?.path ?? 'model.preprocess.image';
  const named = overrides?.input ?? (inputs.some((s) => s.name === 'pixel_values') ? 'pixel_values' : undefined);
  const input = imageInputOf(inputs, named, where);
  const { layout, channels, height, width } = imageGeometry(input.shape);
  const defaults = processorDefaults(processorType(json));
  const { resize, centerCrop } = resizeAndCrop(json, { height, width }, defaults, overrides, where);
  const doNormalize = json.do_normalize !== false;
  const mean = channelNumbers(json.image_mean, 'image_mean', defaults.mean, where);
  const std = channelNumbers(json.image_std, 'image_std', defaults.std, where);
  const settings: ImageSettings = {
    input: input.name,
    datatype: input.datatype,
    layout,
    channels,
    height: height > 0 ? height : null,
    width: width > 0 ? width : null,
    convertRgb: overrides?.convertRgb ?? json.do_convert_rgb !== false,
    resize,
    resample: overrides?.resample ?? knownResample(json.resample, where) ?? defaults.resample,
    centerCrop,
    rescaleFactor: overrides?.rescaleFactor !== undefined ? overrides.rescaleFactor : json.do_rescale === false ? null : rescaleOf(json.rescale_factor, where),
    normalize: overrides?.normalize !== undefined ? overrides.normalize : doNormalize ? { mean, std } : null,
    alpha: overrides?.alpha ?? IMAGE_DEFAULTS.alpha,
    maxBytes: overrides?.maxBytes ?? IMAGE_DEFAULTS.maxBytes,
    maxPixels: overrides?.maxPixels ?? IMAGE_DEFAULTS.maxPixels,
    formats: overrides?.formats ?? IMAGE_FORMATS,
  };
  if (input.datatype === 'UINT8') {
    settings.rescaleFactor = null;
    settings.normalize = null;
  }
  const norm = settings.normalize;
  if (norm && (![1, channels].includes(norm.mean.length) || ![1, channels].includes(norm.std.length) || norm.std.some((s) => !isPositive(s)))) {
    throw inputError(
      `${where}: image_mean and image_std need ${channels} values (std above 0), got ${JSON.stringify(norm.mean)} and ${JSON.stringify(norm.std)}`,
    );
  }
  return settings;
}

/** The model's text inputs by role, from the names transformers' exports use. */
function textInputs(inputs: Signature[], where: string): TextInputs | undefined {
  const find = (...names: string[]) => inputs.find((s) => names.includes(s.name));
  const ids = find('input_ids');
  if (!ids) return undefined;
  const roles: TextInputs = { ids: { name: ids.name, datatype: ids.datatype } };
  const mask = find('attention_mask');
  const typeIds = find('token_type_ids');
  const positions = find('position_ids');
  if (mask) roles.mask = { name: mask.name, datatype: mask.datatype };
  if (typeIds) roles.typeIds = { name: typeIds.name, datatype: typeIds.datatype };
  if (positions) roles.positions = { name: positions.name, datatype: positions.datatype };
  const used = new Set([ids, mask, typeIds, positions].filter(Boolean));
  const others = inputs.filter((s) => !used.has(s));
  if (others.length > 0) {
    throw notFillable(
      `${where}: the model also takes ${others.map((s) => `'${s.name}'`).join(', ')}, which a tokenizer does not fill`,
      'send tensors to this model, or export it with input_ids, attention_mask and token_type_ids only (past key values: export without them)',
    );
  }
  for (const s of used) {
    if (!TOKEN_TYPES.has(s!.datatype) || s!.shape.length !== 2)
      throw notFillable(`${where}: input '${s!.name}' is ${s!.datatype} [${s!.shape.join(', ')}]; token inputs are INT64 or INT32 [batch, sequence]`);
  }
  return roles;
}

function textPlan(
  folder: ModelFolder,
  inputs: Signature[],
  overrides: NonNullable<ProcessingOverrides['preprocess']>['text'] | undefined,
): TextPlan | undefined {
  const file = folder.files['tokenizer.json'];
  if (!file) {
    if (overrides)
      throw inputError('model.preprocess.text: the model folder has no tokenizer.json', 'put the tokenizer.json the export wrote beside model.onnx');
    return undefined;
  }
  const roles = textInputs(inputs, file.path);
  if (!roles) {
    if (overrides)
      throw inputError(`model.preprocess.text: the model has no input named input_ids`, 'text models take input_ids (and attention_mask, token_type_ids)');
    return undefined;
  }
  const config = { ...(folder.files['special_tokens_map.json']?.json ?? {}), ...(folder.files['tokenizer_config.json']?.json ?? {}) };
  const modelConfig = folder.files['config.json']?.json ?? {};
  // transformers writes 1e30 as model_max_length when the tokenizer sets none: the model's positions bound it.
  const declared = [config.model_max_length, modelConfig.max_position_embeddings].filter((n): n is number => isPositive(n) && n < 1e9);
  const sequence = inputs.find((s) => s.name === roles.ids.name)!.shape[1];
  if (sequence > 0) declared.push(sequence);
  const maxLength = overrides?.maxLength ?? (declared.length > 0 ? Math.min(...declared) : 512);
  const settings: TextSettings = {
    inputs: roles,
    maxLength,
    truncation: overrides?.truncation ?? TEXT_DEFAULTS.truncation,
    maxBytes: overrides?.maxBytes ?? TEXT_DEFAULTS.maxBytes,
  };
  const plan = { settings, tokenizerJson: file.json, tokenizerConfig: config };
  try {
    new TextTokenizer(plan.tokenizerJson, plan.tokenizerConfig, settings);
  } catch (error) {
    throw inputError(
      `${file.path}: the tokenizer cannot be built (${(error as Error).message.split('\n')[0]})`,
      'check that tokenizer.json is the one the export wrote',
    );
  }
  return plan;
}

function labelPlan(folder: ModelFolder, outputs: Signature[], overrides: ProcessingOverrides['postprocess'] | undefined): LabelSettings | undefined {
  const config = folder.files['config.json'];
  const id2label = config?.json.id2label;
  const hasNames = id2label && typeof id2label === 'object';
  // Planning for reading data only (holdouts) passes no outputs.
  if (outputs.length === 0 || (!hasNames && !overrides?.labels && !overrides?.function)) return undefined;
  const where = config?.path ?? 'model.postprocess';
  const floats = outputs.filter((o) => ['FP32', 'FP16', 'FP64'].includes(o.datatype));
  const named = overrides?.output ?? (outputs.some((o) => o.name === 'logits') ? 'logits' : undefined);
  const output = named ? outputs.find((o) => o.name === named) : floats[0];
  if (!output)
    throw notFillable(
      `${where}: no output to read labels from${named ? `: the model has no output '${named}'` : ' (no float output)'}`,
      'name it in model.postprocess.output',
    );
  // transformers writes id2label into every config.json (LABEL_0, LABEL_1 by default), classifier or not: only
  // a [batch, classes] output with as many classes as names is read as labels, unless the config says so.
  const classes = output.shape.length === 2 ? output.shape[1] : undefined;
  const count = hasNames ? Object.keys(id2label).length : 0;
  if (!overrides?.labels && !overrides?.output && (classes === undefined || (classes > 0 && count > 0 && classes !== count))) {
    throw notFillable(
      `${where}: output '${output.name}' is [${output.shape.join(', ')}], not [batch, ${count}] classes, so its id2label is not read as labels`,
      'name the output in model.postprocess.output to read it anyway',
    );
  }
  let names: string[] = [];
  if (overrides?.labels) names = overrides.labels;
  else if (hasNames) {
    for (const [key, value] of Object.entries(id2label as Record<string, unknown>)) {
      const index = Number(key);
      if (!Number.isInteger(index) || index < 0 || typeof value !== 'string')
        throw inputError(`${where}: id2label has ${JSON.stringify(key)}: ${JSON.stringify(value)}; expected "0": "name"`);
      names[index] = value;
    }
  }
  const problem = config?.json.problem_type;
  const fn: ScoreFunction =
    overrides?.function && overrides.function !== 'auto'
      ? overrides.function
      : problem === 'multi_label_classification'
        ? 'sigmoid'
        : problem === 'regression'
          ? 'none'
          : 'softmax';
  return { output: output.name, function: fn, names: Array.from({ length: names.length }, (_, i) => names[i] ?? `LABEL_${i}`), topK: overrides?.topK ?? 1 };
}

/** The plan for a model whose folder is read; undefined when it takes and answers tensors only. */
export function planProcessing(
  folder: ModelFolder,
  model: { inputs: Signature[]; outputs: Signature[] },
  overrides: ProcessingOverrides = {},
): ProcessingPlan | undefined {
  const notes: string[] = [];
  // What the folder alone suggests and the model cannot take is a note, and the model takes tensors as before;
  // what the config asks for and cannot be done is an error.
  const attempt = <T>(asked: boolean, make: () => T | undefined): T | undefined => {
    if (asked) return make();
    try {
      return make();
    } catch (error) {
      // A file with wrong values is an error the user must see; a model the file does not fit is a note.
      if (!(error instanceof MlopsError) || !NOT_FILLABLE.has(error)) throw error;
      notes.push(error.message);
      return undefined;
    }
  };
  const pre = overrides.preprocess ?? {};
  const post = overrides.postprocess ?? {};
  const image = attempt(Object.keys(pre.image ?? {}).length > 0, () =>
    imagePlan(folder, model.inputs, pre.image && Object.keys(pre.image).length > 0 ? pre.image : undefined),
  );
  const text = image
    ? undefined
    : attempt(Object.keys(pre.text ?? {}).length > 0, () =>
        textPlan(folder, model.inputs, pre.text && Object.keys(pre.text).length > 0 ? pre.text : undefined),
      );
  const labels = attempt(Object.keys(post).length > 0, () => labelPlan(folder, model.outputs, Object.keys(post).length > 0 ? post : undefined));
  if (!image && !text && !labels && notes.length === 0) return undefined;
  const used = new Set<string>(['config.json']);
  if (image) used.add('preprocessor_config.json');
  if (text) ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'].forEach((n) => used.add(n));
  const files = Object.values(folder.files)
    .filter((f) => used.has(f.name))
    .map(({ name, path, sha256, sizeBytes }) => ({ name, path, sha256, sizeBytes }));
  return { ...(image ? { image } : {}), ...(text ? { text } : {}), ...(labels ? { labels } : {}), files: image || text || labels ? files : [], notes };
}

export type RawInput = Uint8Array | string;
export type InputFacts = { image: ImageFacts } | { text: TextFacts };

/** Raw inputs (encoded images, or texts) to feeds: built once per plan, per thread. */
export interface Preprocessor {
  kind: 'image' | 'text';
  toFeeds(raw: RawInput[], where: (index: number) => string): Promise<{ feeds: Tensors; facts: InputFacts[] }>;
  /** The tokenizer, for explanations that mask tokens. */
  tokenizer?: TextTokenizer;
}

export function createPreprocessor(plan: ProcessingPlan): Preprocessor | undefined {
  if (plan.image) {
    const settings = plan.image;
    return {
      kind: 'image',
      async toFeeds(raw, where) {
        const bytes = raw.map((r) => (typeof r === 'string' ? Buffer.from(r, 'utf8') : r));
        const { tensor, facts } = await imagesToTensor(bytes, settings, where);
        return { feeds: { [settings.input]: tensor }, facts: facts.map((image) => ({ image })) };
      },
    };
  }
  if (plan.text) {
    const tokenizer = new TextTokenizer(plan.text.tokenizerJson, plan.text.tokenizerConfig, plan.text.settings);
    return {
      kind: 'text',
      tokenizer,
      async toFeeds(raw, where) {
        const texts = raw.map((r, i) => (typeof r === 'string' ? r : utf8Text(r, where(i))));
        const { feeds, facts } = tokenizer.encode(texts, where);
        return { feeds, facts: facts.map((text) => ({ text })) };
      },
    };
  }
  return undefined;
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** Bytes as text, refused when they are not UTF-8 (never read with U+FFFD in place of what was sent). */
export function utf8Text(bytes: Uint8Array, where: string): string {
  try {
    return UTF8.decode(bytes);
  } catch {
    throw new BadRequestText(`${where}: the text is not UTF-8`);
  }
}

/** Reads the folder beside a model file and plans its processing. */
export async function loadProcessing(
  modelFile: string,
  model: { inputs: Signature[]; outputs: Signature[] },
  overrides?: ProcessingOverrides,
): Promise<ProcessingPlan | undefined> {
  return planProcessing(await readModelFolder(modelFile), model, overrides);
}

/** What each model input receives, in words: `mlops inspect` and `mlops init` print it. */
export function describePlan(plan: ProcessingPlan | undefined): string[] {
  if (!plan) return [];
  const lines: string[] = plan.notes.map((note) => `not used: ${note}`);
  if (plan.image) {
    const s = plan.image;
    const size = s.resize
      ? 'height' in s.resize
        ? `${s.resize.width}x${s.resize.height}`
        : 'shortestEdge' in s.resize
          ? `shortest edge ${s.resize.shortestEdge}${s.resize.cropPct ? ` / crop_pct ${s.resize.cropPct}` : ''}`
          : `longest edge ${s.resize.longestEdge}`
      : 'no resize';
    const steps = [
      s.convertRgb ? (s.channels === 1 ? 'grey' : 'RGB') : undefined,
      `resize ${size} (${s.resample})`,
      s.centerCrop ? `centre crop ${s.centerCrop.width}x${s.centerCrop.height}` : undefined,
      s.rescaleFactor !== null ? `rescale x${Number(s.rescaleFactor.toPrecision(6))}` : undefined,
      s.normalize ? `normalize mean ${JSON.stringify(s.normalize.mean)} std ${JSON.stringify(s.normalize.std)}` : undefined,
      `${s.layout} ${s.datatype}`,
    ].filter(Boolean);
    lines.push(`input '${s.input}' <- an image (${s.formats.join(', ')}): ${steps.join(', ')}`);
  }
  if (plan.text) {
    const s = plan.text.settings;
    const filled = [s.inputs.ids.name, s.inputs.mask?.name, s.inputs.typeIds?.name, s.inputs.positions?.name].filter(Boolean).map((n) => `'${n}'`);
    const model = (plan.text.tokenizerJson as { model?: { type?: string } }).model?.type ?? 'tokenizer';
    lines.push(
      `inputs ${filled.join(', ')} <- a text: ${model} tokenizer.json, at most ${s.maxLength} tokens (${s.truncation === 'truncate' ? 'longer texts cut' : 'longer texts refused'}), padded to the longest of a batch`,
    );
  }
  if (plan.labels) {
    const l = plan.labels;
    lines.push(
      `output '${l.output}' -> labels: ${l.function}, top ${l.topK} of ${l.names.length > 0 ? l.names.slice(0, 6).join(', ') + (l.names.length > 6 ? `, ... (${l.names.length})` : '') : 'LABEL_<i>'}`,
    );
  }
  return lines;
}

/**
 * The plan of the model a config or flag names, read from its folder (or the folder of its file);
 * undefined when the file is not here (a remote server's model) or the model takes tensors only.
 */
export async function processingFor(
  modelPath: string,
  model: { inputs: Signature[]; outputs: Signature[] },
  overrides: ProcessingOverrides,
): Promise<ProcessingPlan | undefined> {
  const file = (await modelFileInFolder(modelPath, modelPath)) ?? modelPath;
  if (!(await stat(file).catch(() => undefined))?.isFile()) return undefined;
  return loadProcessing(file, model, overrides);
}

/** A model file's signature as planning reads it: a tensor without a declared shape takes any. */
export function servableSignature(info: {
  inputs: { name: string; datatype: string; shape: number[] | null }[];
  outputs: { name: string; datatype: string; shape: number[] | null }[];
}): { inputs: Signature[]; outputs: Signature[] } {
  const one = (t: { name: string; datatype: string; shape: number[] | null }): Signature => ({
    name: t.name,
    datatype: t.datatype as Datatype,
    shape: t.shape ?? [],
    ...(t.shape === null ? { anyShape: true } : {}),
  });
  return { inputs: info.inputs.map(one), outputs: info.outputs.map(one) };
}
