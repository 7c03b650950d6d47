/**
 * Occlusion attribution for images and other spatial tensors: each patch of `patch` x `patch`
 * positions is set to zero (across channels) in turn, and its attribution to an output column is how
 * much that column falls: f(x) - f(x with the patch zeroed). Every pixel of a patch carries the
 * patch's value, so the map has the input's spatial shape.
 */

/** Runs the model on `count` rows of one input (row-major, each `rowSize` values) and answers `width` outputs a row. */
export type RowsModel = (rows: Float64Array, count: number) => Promise<{ data: ArrayLike<number>; width: number }>;

export interface SpatialLayout {
  /** The row's shape (without the batch dimension). */
  dims: number[];
  /** Which two axes of `dims` are height and width. */
  axes: [number, number];
}

/**
 * The spatial axes of a row shape: [H, W]; [C, H, W] or [H, W, C] (channels of 1, 3 or 4, first when
 * ambiguous); the last two of anything larger. Null for a vector (tabular: Kernel SHAP's) or a scalar.
 */
export function spatialLayout(dims: number[]): SpatialLayout | null {
  if (dims.length < 2 || dims.some((d) => d <= 0)) return null;
  if (dims.length === 2) return { dims, axes: [0, 1] };
  if (dims.length === 3) {
    const channelsFirst = [1, 3, 4].includes(dims[0]);
    const channelsLast = [1, 3, 4].includes(dims[2]);
    return { dims, axes: channelsLast && !channelsFirst ? [0, 1] : [1, 2] };
  }
  return { dims, axes: [dims.length - 2, dims.length - 1] };
}

export interface OcclusionResult {
  /** The row's outputs. */
  output: Float64Array;
  width: number;
  /** Patches along height and width. */
  grid: [number, number];
  /** Attribution of patch (i, j) to column k at [(i * grid[1] + j) * width + k]. */
  patches: Float64Array;
  /** Model rows run: the row and one per patch. */
  modelRows: number;
}

/** Occludes every patch of one row, `chunk` variants to a model call. */
export async function occlude(model: RowsModel, row: Float64Array, layout: SpatialLayout, patch: number, chunk: number): Promise<OcclusionResult> {
  const { dims, axes } = layout;
  const [h, w] = [dims[axes[0]], dims[axes[1]]];
  const grid: [number, number] = [Math.ceil(h / patch), Math.ceil(w / patch)];
  const count = grid[0] * grid[1];
  // Strides of the row's axes, to find every element a (y, x) position covers across the other axes.
  const strides = dims.map((_, i) => dims.slice(i + 1).reduce((n, d) => n * d, 1));
  const positionsOf = (y: number, x: number): number[] => {
    const offsets = [y * strides[axes[0]] + x * strides[axes[1]]];
    dims.forEach((d, axis) => {
      if (axis === axes[0] || axis === axes[1]) return;
      const base = offsets.splice(0);
      for (const o of base) for (let i = 0; i < d; i++) offsets.push(o + i * strides[axis]);
    });
    return offsets;
  };
  const zeroed = (p: number): number[] => {
    const [pi, pj] = [Math.floor(p / grid[1]), p % grid[1]];
    const out: number[] = [];
    for (let y = pi * patch; y < Math.min(h, (pi + 1) * patch); y++)
      for (let x = pj * patch; x < Math.min(w, (pj + 1) * patch); x++) out.push(...positionsOf(y, x));
    return out;
  };
  const base = await model(row, 1);
  const width = base.width;
  const output = Float64Array.from({ length: width }, (_, k) => base.data[k]);
  const patches = new Float64Array(count * width);
  for (let from = 0; from < count; from += chunk) {
    const n = Math.min(chunk, count - from);
    const variants = new Float64Array(n * row.length);
    for (let v = 0; v < n; v++) {
      variants.set(row, v * row.length);
      for (const i of zeroed(from + v)) variants[v * row.length + i] = 0;
    }
    const { data } = await model(variants, n);
    for (let v = 0; v < n; v++) for (let k = 0; k < width; k++) patches[(from + v) * width + k] = output[k] - data[v * width + k];
  }
  return { output, width, grid, patches, modelRows: count + 1 };
}

/** One column's patch attributions (laid out as OcclusionResult.patches, `width` columns a patch) as a map of the input's spatial shape, [height][width]. */
export function spatialMap(
  patches: ArrayLike<number>,
  grid: [number, number],
  width: number,
  column: number,
  shape: [number, number],
  patch: number,
): number[][] {
  const [h, w] = shape;
  return Array.from({ length: h }, (_, y) =>
    Array.from({ length: w }, (_, x) => patches[(Math.floor(y / patch) * grid[1] + Math.floor(x / patch)) * width + column]),
  );
}
