import type { Datatype } from '../model/datatypes.js';

/** What the holdout readers need to know of each model input. */
export interface InputLayout {
  name: string;
  datatype: Datatype;
  /** One row's shape: the input's shape without the batch dimension. -1 where dynamic. */
  rowShape: number[];
  /** Elements in one row, or null when a dynamic dimension makes it unknown. */
  rowSize: number | null;
}

export interface HoldoutRow {
  /** Where the row is, for error messages: "row 12" (CSV line), "line 3" (JSONL), "index 5" (npy). */
  where: string;
  /** Each input's values for this row, row-major. */
  inputs: Record<string, ArrayLike<number | string>>;
  /** Each input's row shape (known from the layout, or read from nested JSON). */
  shapes: Record<string, number[]>;
  label: string | number;
}

export interface HoldoutSource {
  file: string;
  format: 'csv' | 'jsonl' | 'npy' | 'images';
  /** Per-input feature names for statistics: CSV columns, or input[i]. */
  featureNames: Record<string, string[]>;
  rows(): AsyncGenerator<HoldoutRow>;
}
