/**
 * What an image model looks at, over a holdout: occlusion (each patch zeroed in turn) on a seeded
 * sample of rows, and per position the mean |fall| of each row's predicted column (or its value).
 * The global counterpart of the explain route's per-prediction maps.
 */
import type { Config } from '../config/defaults.js';
import { inputError } from '../errors.js';
import { GrowingArray } from '../evaluate/batches.js';
import { chooseOutput } from '../evaluate/evaluate.js';
import type { HoldoutSource } from '../holdout/types.js';
import { seededRandom } from '../model/random.js';
import type { Predictor, TensorSignature } from '../predict/predictor.js';
import { batchModel, type ExplainSettings } from './global.js';
import { occlude, spatialLayout, spatialMap, type SpatialLayout } from './occlusion.js';
import { sampleRows, spreadExamples } from './sample.js';

export interface ImagePatch {
  /** Rows [from, to) and columns [from, to) of the input's height and width. */
  rows: [number, number];
  columns: [number, number];
  meanAbsAttribution: number;
}

export interface GlobalOcclusion {
  method: 'occlusion';
  model: string;
  input: string;
  output: string;
  holdoutRows: number;
  explainedRows: number;
  patch: number;
  /** Height and width of the input. */
  spatialShape: [number, number];
  /** Per position, the mean over the explained rows of |the predicted column's fall| when its patch was zeroed. */
  map: number[][];
  /** Patches ranked by that mean, largest first. */
  patches: ImagePatch[];
  /** Model rows one row costs: one per patch, and the row. */
  modelRowsPerExplanation: number;
  /** A few explained rows as the model saw them (PNG data URIs), each with its own map: where a picture of the input can be drawn. */
  examples?: { where: string; picture: string; column: number; map: number[][] }[];
  seconds: number;
}

/** Rows drawn with their own maps in the report. */
const EXAMPLES = 4;

/** The one image-like input occlusion handles, with its layout; null when the model has none (then it is tabular, or neither). */
export function imageInput(predictor: Pick<Predictor, 'inputs'>): { input: TensorSignature & { width: number }; layout: SpatialLayout } | null {
  const [input] = predictor.inputs;
  if (predictor.inputs.length !== 1 || input.datatype === 'BYTES' || input.datatype === 'BOOL' || input.shape.length < 3) return null;
  const dims = input.shape.slice(1);
  const layout = spatialLayout(dims);
  if (!layout) {
    throw inputError(
      `input '${input.name}' has dynamic dimensions beyond the batch ([${input.shape.join(', ')}]): occlusion needs the image's size`,
      "export the model with a fixed height and width, or explain single predictions with the server's explain route",
    );
  }
  return { input: { ...input, width: dims.reduce((n, d) => n * d, 1) }, layout };
}

/** The holdout's images in memory, each checked to be one row of numbers: a flat rows x width matrix, and where each row came from. */
async function readImageMatrix(holdout: HoldoutSource, input: TensorSignature & { width: number }): Promise<{ matrix: Float64Array; wheres: string[] }> {
  const values = new GrowingArray(Float64Array);
  const wheres: string[] = [];
  for await (const row of holdout.rows()) {
    wheres.push(row.where);
    const data = row.inputs[input.name];
    if (data.length !== input.width)
      throw inputError(
        `${holdout.file} ${row.where}: ${data.length} values for input '${input.name}', which takes ${input.width} a row`,
        'the holdout must hold one image a row',
      );
    for (let i = 0; i < input.width; i++) {
      const v = Number(data[i]);
      if (!Number.isFinite(v))
        throw inputError(`${holdout.file} ${row.where}, value ${i}: ${JSON.stringify(data[i])} is not a number`, 'explanations need every value as a number');
      values.push(v);
    }
  }
  if (wheres.length < 1) throw inputError(`${holdout.file} has no rows`, 'use a holdout of images');
  return { matrix: values.view() as Float64Array, wheres };
}

/** The column occlusion watches in a row's output: its predicted class, or the value. */
function predictedColumn(output: ArrayLike<number>, width: number): number {
  let column = 0;
  for (let k = 1; k < width; k++) if (output[k] > output[column]) column = k;
  return column;
}

/** The patches of a `grid` over an h x w image, with their mean |attribution|, largest first. */
function rankedPatches(means: Float64Array, grid: [number, number], patch: number, [h, w]: [number, number]): ImagePatch[] {
  return Array.from(means, (m, p) => {
    const [i, j] = [Math.floor(p / grid[1]), p % grid[1]];
    return {
      rows: [i * patch, Math.min(h, (i + 1) * patch)] as [number, number],
      columns: [j * patch, Math.min(w, (j + 1) * patch)] as [number, number],
      meanAbsAttribution: m,
    };
  }).sort((a, b) => b.meanAbsAttribution - a.meanAbsAttribution);
}

export async function explainImagesGlobally(options: {
  predictor: Predictor;
  image: NonNullable<ReturnType<typeof imageInput>>;
  holdout: HoldoutSource;
  test: Config['test'];
  settings: ExplainSettings & { patch: number };
  onProgress?: (line: string) => void;
  /** Turns one row of the input back into a picture (a model folder's preprocessing, undone). */
  picture?: (row: Float64Array) => Promise<Buffer>;
}): Promise<GlobalOcclusion> {
  const started = performance.now();
  const { predictor, holdout, settings } = options;
  const { input, layout } = options.image;
  const output = chooseOutput(predictor, options.test.output);
  const { matrix, wheres } = await readImageMatrix(holdout, input);
  const rows = wheres.length;
  const model = batchModel(predictor, input, output.name, layout.dims);
  const explained = sampleRows(rows, settings.rows, seededRandom(settings.seed));
  const [h, w] = [layout.dims[layout.axes[0]], layout.dims[layout.axes[1]]];
  let sums: Float64Array | undefined;
  let grid: [number, number] = [1, 1];
  let modelRows = 0;
  const examples: NonNullable<GlobalOcclusion['examples']> = [];
  const drawn = spreadExamples(explained.length, EXAMPLES);
  for (const [n, r] of explained.entries()) {
    const result = await occlude(model, matrix.subarray(r * input.width, (r + 1) * input.width), layout, settings.patch, 256);
    grid = result.grid;
    modelRows = result.modelRows;
    sums ??= new Float64Array(grid[0] * grid[1]);
    const column = predictedColumn(result.output, result.width);
    for (let p = 0; p < sums.length; p++) sums[p] += Math.abs(result.patches[p * result.width + column]);
    if (options.picture && drawn.has(n)) {
      const png = await options.picture(matrix.slice(r * input.width, (r + 1) * input.width));
      examples.push({
        where: wheres[r],
        picture: `data:image/png;base64,${png.toString('base64')}`,
        column,
        map: spatialMap(result.patches, grid, result.width, column, [h, w], settings.patch),
      });
    }
    options.onProgress?.(`occlusion: ${n + 1}/${explained.length} rows`);
  }
  const means = sums!.map((s) => s / explained.length);
  return {
    method: 'occlusion',
    model: predictor.modelName,
    input: input.name,
    output: output.name,
    holdoutRows: rows,
    explainedRows: explained.length,
    patch: settings.patch,
    spatialShape: [h, w],
    map: spatialMap(means, grid, 1, 0, [h, w], settings.patch),
    patches: rankedPatches(means, grid, settings.patch, [h, w]),
    modelRowsPerExplanation: modelRows,
    ...(examples.length > 0 ? { examples } : {}),
    seconds: Math.round((performance.now() - started) / 10) / 100,
  };
}
