/**
 * Encoded images (JPEG, PNG, WebP, GIF, TIFF, AVIF) to a model's pixel tensor, with the steps and
 * defaults of Hugging Face's image processors: convert to RGB, resize (`{height, width}`,
 * `{shortest_edge}` with ConvNeXt's `crop_pct`, `{longest_edge}`), centre crop, rescale, normalize,
 * then the model's layout (NCHW or NHWC) and datatype. libvips (sharp) decodes and resizes, on its
 * own thread pool: the event loop only lays the pixels out.
 */
import { availableParallelism } from 'node:os';
import type { KernelEnum, Metadata, OutputInfo, SharpOptions } from 'sharp';
import { allocate, toHalfBits, type Datatype, type TensorData } from '../model/datatypes.js';
import type { Tensor } from '../model/session.js';
import { BadRequest as ProcessingError } from '../protocol/request.js';

type Sharp = typeof import('sharp').default;
let loaded: Promise<Sharp> | undefined;
/**
 * sharp (libvips, a native addon) is loaded on first use: images of tabular models do not carry it,
 * and their server never asks for it.
 */
export function loadSharp(): Promise<Sharp> {
  loaded ??= import('sharp').then((m) => {
    const sharp = (m as unknown as { default?: Sharp }).default ?? (m as unknown as Sharp);
    // A libvips cache would hold decoded images of every size seen: requests never repeat.
    sharp.cache(false);
    // One libvips thread per image: images are decoded side by side (DECODE_SLOTS at once), and more
    // threads than cores took the CPU from the event loop (health p99 49 ms under load, npm run bench).
    sharp.concurrency(1);
    return sharp;
  });
  return loaded;
}

export type Resample = 'nearest' | 'bilinear' | 'bicubic' | 'lanczos' | 'box' | 'hamming';
/** PIL's resampling constants, as preprocessor_config.json writes them. */
const PIL_RESAMPLE: Record<number, Resample> = { 0: 'nearest', 1: 'lanczos', 2: 'bilinear', 3: 'bicubic', 4: 'box', 5: 'hamming' };
/** libvips' nearest match for each: its reducers widen the kernel when shrinking, as PIL's do. */
const KERNEL: Record<Resample, keyof KernelEnum> = {
  nearest: 'nearest',
  bilinear: 'linear',
  bicubic: 'cubic',
  lanczos: 'lanczos3',
  box: 'linear',
  hamming: 'linear',
};

/** The interpolator an enlarging axis takes for each resampling filter. */
const INTERPOLATOR: Record<Resample, 'nearest' | 'bilinear' | 'bicubic'> = {
  nearest: 'nearest',
  bilinear: 'bilinear',
  bicubic: 'bicubic',
  lanczos: 'bicubic',
  box: 'bilinear',
  hamming: 'bilinear',
};

export type ImageFormat = 'jpeg' | 'png' | 'webp' | 'gif' | 'tiff' | 'avif';
export const IMAGE_FORMATS: ImageFormat[] = ['jpeg', 'png', 'webp', 'gif', 'tiff', 'avif'];

export type ResizeRule = { height: number; width: number } | { shortestEdge: number; longestEdge?: number; cropPct?: number } | { longestEdge: number };

/** Everything needed to turn one encoded image into the model's input, decided once per model. */
export interface ImageSettings {
  /** The model input the pixels fill. */
  input: string;
  datatype: Datatype;
  layout: 'NCHW' | 'NHWC';
  channels: 1 | 3;
  /** The model's fixed height and width, when it has them. */
  height: number | null;
  width: number | null;
  convertRgb: boolean;
  resize: ResizeRule | null;
  resample: Resample;
  centerCrop: { height: number; width: number } | null;
  rescaleFactor: number | null;
  normalize: { mean: number[]; std: number[] } | null;
  /** What to do with an alpha channel: composite on white or black, or refuse the image. */
  alpha: 'white' | 'black' | 'refuse';
  /** Checked before anything is decoded. */
  maxBytes: number;
  maxPixels: number;
  formats: ImageFormat[];
}

/** What an image looked like before it was processed: the monitor's input statistics. */
export interface ImageFacts {
  format: ImageFormat;
  width: number;
  height: number;
  /** Mean of the processed pixels before rescale/normalize, 0-255. */
  brightness: number;
  /** Standard deviation of those pixels, 0-255. */
  contrast: number;
}

export const pilResample = (value: unknown): Resample | undefined => (typeof value === 'number' ? PIL_RESAMPLE[value] : undefined);

/** The size an image is resized to under `rule`, as transformers computes it (its int() truncates). */
export function resizedSize(rule: ResizeRule, width: number, height: number): { width: number; height: number } {
  if ('height' in rule) return { width: rule.width, height: rule.height };
  if ('shortestEdge' in rule) {
    // ConvNeXt: under 384, resize the short side to edge / crop_pct, then the centre crop takes edge x edge.
    const target = rule.cropPct !== undefined && rule.shortestEdge < 384 ? Math.trunc(rule.shortestEdge / rule.cropPct) : rule.shortestEdge;
    if (rule.cropPct !== undefined && rule.shortestEdge >= 384) return { width: rule.shortestEdge, height: rule.shortestEdge };
    const short = Math.min(width, height);
    const long = Math.max(width, height);
    let newShort = target;
    let newLong = Math.trunc((target * long) / short);
    if (rule.longestEdge !== undefined && newLong > rule.longestEdge) {
      newShort = Math.trunc((rule.longestEdge * newShort) / newLong);
      newLong = rule.longestEdge;
    }
    return width <= height ? { width: newShort, height: newLong } : { width: newLong, height: newShort };
  }
  const scale = rule.longestEdge / Math.max(width, height);
  return { width: Math.max(1, Math.round(width * scale)), height: Math.max(1, Math.round(height * scale)) };
}

/** The crop after the resize: the processor's centre crop, or ConvNeXt's implied one. */
function cropFor(settings: ImageSettings): { height: number; width: number } | null {
  if (settings.centerCrop) return settings.centerCrop;
  const rule = settings.resize;
  if (rule && 'shortestEdge' in rule && rule.cropPct !== undefined && rule.shortestEdge < 384) return { height: rule.shortestEdge, width: rule.shortestEdge };
  return null;
}

/** The height and width a processed image has, before it is seen (null: it depends on the image). */
export function outputSize(settings: ImageSettings): { height: number; width: number } | null {
  const crop = cropFor(settings);
  if (crop) return crop;
  if (settings.resize && 'height' in settings.resize) return settings.resize;
  return null;
}

/** A sharp pipeline: one image's steps, run when its pixels are asked for. */
type Pipeline = ReturnType<Sharp>;

/** What an image is, read from its header and judged against the limits and formats before a pixel is decoded. */
async function imageHeader(
  sharp: Sharp,
  bytes: Uint8Array,
  settings: ImageSettings,
  options: SharpOptions,
  where: string,
): Promise<{ format: ImageFormat; width: number; height: number; hasAlpha: boolean }> {
  if (bytes.byteLength === 0) throw new ProcessingError(`${where}: empty image (0 bytes)`, 400);
  if (bytes.byteLength > settings.maxBytes)
    throw new ProcessingError(
      `${where}: ${bytes.byteLength} bytes, over the ${settings.maxBytes} bytes an image may have (model.preprocess.image.maxBytes)`,
      413,
    );
  let meta: Metadata;
  try {
    // The header only: the size and format are judged before a pixel is decoded.
    meta = await sharp(bytes, { ...options, limitInputPixels: false }).metadata();
  } catch (error) {
    throw new ProcessingError(`${where}: not an image that can be read (${firstLine(error)})`, 400);
  }
  const format = meta.format === 'heif' && meta.compression === 'av1' ? 'avif' : (meta.format as string) === 'jpg' ? 'jpeg' : (meta.format as string);
  if (!(settings.formats as string[]).includes(format)) {
    throw new ProcessingError(`${where}: ${format} images are not accepted; send one of ${settings.formats.join(', ')}`, 415);
  }
  const pageHeight = meta.pageHeight ?? meta.height;
  if (!meta.width || !pageHeight || meta.width * pageHeight > settings.maxPixels) {
    throw new ProcessingError(
      `${where}: ${meta.width} x ${pageHeight} pixels, over the ${settings.maxPixels} pixels an image may have (model.preprocess.image.maxPixels)`,
      413,
    );
  }
  if (meta.hasAlpha && settings.alpha === 'refuse')
    throw new ProcessingError(`${where}: the image has an alpha channel, which this model refuses (model.preprocess.image.alpha)`, 400);
  // EXIF orientation is applied on load, so width and height are as a person sees the image.
  const width = meta.autoOrient?.width ?? meta.width;
  const height = meta.autoOrient?.height ?? pageHeight;
  return { format: format as ImageFormat, width, height, hasAlpha: meta.hasAlpha };
}

/** The resize step added to the pipeline, and the size it gives. */
async function resizeStep(
  sharp: Sharp,
  pipeline: Pipeline,
  rule: ResizeRule,
  resample: Resample,
  { width, height }: { width: number; height: number },
  where: string,
): Promise<{ pipeline: Pipeline; size: { width: number; height: number } }> {
  const size = resizedSize(rule, width, height);
  // Shrinking: libvips' reducer, antialiased as PIL's is (within a few levels of PIL's pixels).
  const shrunk = { width: Math.min(width, size.width), height: Math.min(height, size.height) };
  if (shrunk.width !== width || shrunk.height !== height) {
    pipeline = pipeline.resize(shrunk.width, shrunk.height, { fit: 'fill', kernel: KERNEL[resample], fastShrinkOnLoad: false });
  }
  // Enlarging: libvips' resize places pixel centres otherwise than PIL (81 levels apart on a 56x72 -> 64x64
  // image); an affine transform with PIL's half-pixel centres comes within 9, so an axis that grows goes that way.
  if (size.width > shrunk.width || size.height > shrunk.height) {
    const mid = await pipeline
      .removeAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true })
      .catch((error: unknown) => {
        throw new ProcessingError(`${where}: the image data is damaged (${firstLine(error)})`, 400);
      });
    pipeline = sharp(mid.data, { raw: { width: mid.info.width, height: mid.info.height, channels: mid.info.channels } }).affine(
      [size.width / shrunk.width, 0, 0, size.height / shrunk.height],
      {
        interpolator: INTERPOLATOR[resample],
        idx: 0.5,
        idy: 0.5,
        odx: -0.5,
        ody: -0.5,
      },
    );
  }
  return { pipeline, size };
}

/** transformers' centre crop added to the pipeline: floor((size - crop) / 2), padded with zeros where the image is smaller. */
async function centreCropStep(
  sharp: Sharp,
  pipeline: Pipeline,
  size: { width: number; height: number },
  crop: { width: number; height: number },
  channels: ImageSettings['channels'],
): Promise<Pipeline> {
  const top = Math.floor((size.height - crop.height) / 2);
  const left = Math.floor((size.width - crop.width) / 2);
  if (top < 0 || left < 0) {
    pipeline = sharp(await pipeline.removeAlpha().raw().toBuffer(), { raw: { width: size.width, height: size.height, channels } }).extend({
      top: Math.max(0, -top),
      bottom: Math.max(0, crop.height - size.height + top),
      left: Math.max(0, -left),
      right: Math.max(0, crop.width - size.width + left),
      background: '#000000',
    });
    const padded = { width: Math.max(size.width, crop.width), height: Math.max(size.height, crop.height) };
    size = padded;
  }
  const t = Math.max(0, Math.floor((size.height - crop.height) / 2));
  const l = Math.max(0, Math.floor((size.width - crop.width) / 2));
  if (size.height !== crop.height || size.width !== crop.width) pipeline = pipeline.extract({ top: t, left: l, width: crop.width, height: crop.height });
  return pipeline;
}

/** The decoded, resized and cropped pixels of one image, HWC uint8, with what was seen of it. */
async function pixels(
  bytes: Uint8Array,
  settings: ImageSettings,
  where: string,
): Promise<{ data: Buffer; width: number; height: number; facts: Omit<ImageFacts, 'brightness' | 'contrast'> }> {
  const sharp = await loadSharp();
  const options: SharpOptions = { limitInputPixels: settings.maxPixels, failOn: 'truncated', pages: 1, autoOrient: true };
  const { format, width, height, hasAlpha } = await imageHeader(sharp, bytes, settings, options, where);
  let pipeline = sharp(bytes, options);
  if (hasAlpha) pipeline = pipeline.flatten({ background: settings.alpha === 'black' ? '#000000' : '#ffffff' });
  pipeline = settings.channels === 1 ? pipeline.toColourspace('b-w') : pipeline.toColourspace('srgb');
  let size = { width, height };
  if (settings.resize) {
    const resized = await resizeStep(sharp, pipeline, settings.resize, settings.resample, size, where);
    pipeline = resized.pipeline;
    size = resized.size;
  }
  const crop = cropFor(settings);
  if (crop) pipeline = await centreCropStep(sharp, pipeline, size, crop, settings.channels);
  let out: { data: Buffer; info: OutputInfo };
  try {
    out = await pipeline.removeAlpha().raw().toBuffer({ resolveWithObject: true });
  } catch (error) {
    throw new ProcessingError(`${where}: the image data is damaged (${firstLine(error)})`, 400);
  }
  if (out.info.channels !== settings.channels) throw new Error(`image pipeline gave ${out.info.channels} channels, not ${settings.channels}`);
  return { data: out.data, width: out.info.width, height: out.info.height, facts: { format, width, height } };
}

/**
 * At most one image decoded per core at a time; the others wait their turn in order. libuv's pool
 * (4 threads) would otherwise run four decodes on two cores and starve the event loop.
 */
class Slots {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly size: number) {}
  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.active >= this.size) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.active++;
    try {
      return await work();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }
}
const decodeSlots = new Slots(Math.max(1, availableParallelism()));

const firstLine = (error: unknown) =>
  String((error as Error)?.message ?? error)
    .split('\n')[0]
    .replace(/^Input buffer /, '');

/**
 * Several encoded images to one batch tensor [n, C, H, W] (or [n, H, W, C]). Every image must
 * come out at the same size: a model with fixed height and width, or a processor that fixes it.
 */
export async function imagesToTensor(
  images: Uint8Array[],
  settings: ImageSettings,
  where: (index: number) => string,
): Promise<{ tensor: Tensor; facts: ImageFacts[] }> {
  const decoded = await Promise.all(images.map((bytes, i) => decodeSlots.run(() => pixels(bytes, settings, where(i)))));
  const { width, height } = decoded[0];
  if (settings.height !== null && settings.width !== null && (height !== settings.height || width !== settings.width)) {
    throw new ProcessingError(
      `${where(0)}: processed to ${width} x ${height}, but the model takes ${settings.width} x ${settings.height}; set model.preprocess.image.resize`,
      400,
    );
  }
  decoded.forEach((d, i) => {
    if (d.width !== width || d.height !== height) {
      throw new ProcessingError(
        `${where(i)}: processed to ${d.width} x ${d.height}, but ${where(0)} to ${width} x ${height}; images of one batch must come out the same size (set a fixed resize)`,
        400,
      );
    }
  });
  const c = settings.channels;
  const plane = width * height;
  const perImage = plane * c;
  const data = allocate(settings.datatype, images.length * perImage) as Exclude<TensorData, string[] | BigInt64Array | BigUint64Array>;
  const facts: ImageFacts[] = [];
  const scale = settings.rescaleFactor ?? 1;
  const mean = settings.normalize?.mean ?? [];
  const std = settings.normalize?.std ?? [];
  const half = settings.datatype === 'FP16';
  const integer = settings.datatype === 'UINT8' || settings.datatype === 'INT8' || settings.datatype === 'INT32' || settings.datatype === 'INT64';
  decoded.forEach((image, n) => {
    const src = image.data;
    let sum = 0;
    let squares = 0;
    for (let ch = 0; ch < c; ch++) {
      // value = (pixel * scale - mean) / std  ==  pixel * a + b
      const a = settings.normalize ? scale / (std[ch] ?? std[0]) : scale;
      const b = settings.normalize ? -(mean[ch] ?? mean[0]) / (std[ch] ?? std[0]) : 0;
      for (let p = 0; p < plane; p++) {
        const px = src[p * c + ch];
        sum += px;
        squares += px * px;
        const value = integer ? px : px * a + b;
        const at = settings.layout === 'NCHW' ? n * perImage + ch * plane + p : n * perImage + p * c + ch;
        data[at] = half ? toHalfBits(value) : value;
      }
    }
    const count = plane * c;
    const brightness = sum / count;
    facts.push({ ...image.facts, brightness, contrast: Math.sqrt(Math.max(0, squares / count - brightness * brightness)) });
  });
  const dims = settings.layout === 'NCHW' ? [images.length, c, height, width] : [images.length, height, width, c];
  return { tensor: { data: data as TensorData, dims }, facts };
}

/**
 * A model input's values back to a picture a person can look at (PNG): the normalization and rescale
 * undone, the layout made HWC. For explanations drawn over the image the model saw.
 */
export async function tensorToPng(
  values: ArrayLike<number>,
  settings: Pick<ImageSettings, 'layout' | 'channels' | 'rescaleFactor' | 'normalize' | 'datatype'>,
  height: number,
  width: number,
): Promise<Buffer> {
  const sharp = await loadSharp();
  const c = settings.channels;
  const plane = height * width;
  const pixels = Buffer.alloc(plane * c);
  const scale = settings.rescaleFactor ?? 1;
  for (let ch = 0; ch < c; ch++) {
    const mean = settings.normalize ? (settings.normalize.mean[ch] ?? settings.normalize.mean[0]) : 0;
    const std = settings.normalize ? (settings.normalize.std[ch] ?? settings.normalize.std[0]) : 1;
    for (let p = 0; p < plane; p++) {
      const v = values[settings.layout === 'NCHW' ? ch * plane + p : p * c + ch];
      const px = settings.datatype === 'UINT8' ? v : (v * std + mean) / scale;
      pixels[p * c + ch] = Math.max(0, Math.min(255, Math.round(px)));
    }
  }
  return sharp(pixels, { raw: { width, height, channels: c } })
    .png()
    .toBuffer();
}
