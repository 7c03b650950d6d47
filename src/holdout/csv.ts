import { csvRecords } from './records.js';
import { inputError } from '../errors.js';
import type { HoldoutRow, HoldoutSource, InputLayout } from './types.js';
import { parseValue, valueProblem } from './values.js';

export interface CsvOptions {
  file: string;
  /** As the user named it, for messages. */
  shown: string;
  layouts: InputLayout[];
  label: string;
  /** Data without a label column is accepted (a reference profile needs no labels). */
  labelOptional?: boolean;
  /** test.features: a column list (one input) or input -> columns. Empty: file order. */
  features: string[] | Record<string, string[]>;
  /** The settings messages name: test.features and test.label, or batch's. */
  fields?: { features: string; label: string };
}

interface ColumnPlan {
  input: InputLayout;
  columns: string[];
  indices: number[];
}

async function readHeader(file: string, shown: string): Promise<string[]> {
  for await (const record of csvRecords(file)) return record.cells.map((c) => c.trim());
  throw inputError(`${shown} is empty: no header row`, 'the first line must name the columns');
}

/** Which columns feed which input, checked against the header before any row is read. */
export function planColumns(header: string[], options: CsvOptions): { plans: ColumnPlan[]; labelIndex: number | undefined } {
  const { shown, layouts, label } = options;
  const fields = options.fields ?? { features: 'test.features', label: 'test.label' };
  const index = new Map(header.map((name, i) => [name, i]));
  if (index.size !== header.length) {
    const seen = new Set<string>();
    const twice = header.find((h) => (seen.has(h) ? true : (seen.add(h), false)));
    throw inputError(`${shown}: column '${twice}' appears twice in the header`, 'give every column a distinct name');
  }
  const labelIndex = index.get(label);
  if (labelIndex === undefined && !options.labelOptional) {
    throw inputError(`${shown}: missing column '${label}' (the label)`, `name the label column in ${fields.label}; the columns are: ${header.join(', ')}`);
  }
  const unknownSize = layouts.find((l) => l.rowSize === null);
  if (unknownSize) {
    throw inputError(
      `${shown}: input '${unknownSize.name}' has shape [${unknownSize.rowShape.join(', ')}] beyond the batch, so CSV columns cannot fill it`,
      'use a JSONL holdout, with one nested array per input and row',
    );
  }
  const byInput = new Map<string, string[]>();
  const { features } = options;
  if (Array.isArray(features) && features.length > 0) {
    if (layouts.length !== 1) {
      throw inputError(`${fields.features}: the model has ${layouts.length} inputs; map columns per input`, 'use {"input name": ["column", ...]}');
    }
    byInput.set(layouts[0].name, features);
  } else if (!Array.isArray(features)) {
    for (const layout of layouts) {
      const columns = features[layout.name];
      if (!columns) throw inputError(`${fields.features}: no columns listed for input '${layout.name}'`, `add "${layout.name}": [columns]`);
      byInput.set(layout.name, columns);
    }
    const extra = Object.keys(features).filter((name) => !layouts.some((l) => l.name === name));
    if (extra.length > 0)
      throw inputError(`${fields.features}: the model has no input '${extra[0]}'`, `its inputs are: ${layouts.map((l) => l.name).join(', ')}`);
  } else {
    // File order: every column but the label, split across the inputs in the model's order.
    const rest = header.filter((_, i) => i !== labelIndex);
    const needed = layouts.reduce((n, l) => n + (l.rowSize ?? 0), 0);
    if (rest.length !== needed) {
      const describe = layouts.map((l) => `'${l.name}' takes ${l.rowSize}`).join(', ');
      const problem =
        rest.length > needed
          ? `extra column${rest.length - needed > 1 ? 's' : ''} ${rest
              .slice(needed)
              .map((c) => `'${c}'`)
              .join(', ')}`
          : `missing ${needed - rest.length} column${needed - rest.length > 1 ? 's' : ''}`;
      throw inputError(
        `${shown}: ${problem}: the model needs ${needed} feature columns (${describe})${labelIndex === undefined ? '' : ` besides '${label}'`}, the file has ${rest.length}`,
        labelIndex === undefined && rest.length === needed + 1
          ? `if the extra column is the label, name it in ${fields.label} (now '${label}')`
          : `remove the extra columns, or list the feature columns in ${fields.features}`,
      );
    }
    let offset = 0;
    for (const layout of layouts) {
      byInput.set(layout.name, rest.slice(offset, offset + layout.rowSize!));
      offset += layout.rowSize!;
    }
  }
  const plans = layouts.map((input) => {
    const columns = byInput.get(input.name)!;
    if (columns.length !== input.rowSize) {
      throw inputError(
        `${fields.features}: input '${input.name}' takes ${input.rowSize} values a row, but ${columns.length} columns are listed`,
        `list exactly ${input.rowSize} columns for it`,
      );
    }
    const indices = columns.map((column) => {
      const i = index.get(column);
      if (i === undefined) throw inputError(`${shown}: missing column '${column}' (listed in ${fields.features})`, `the columns are: ${header.join(', ')}`);
      return i;
    });
    return { input, columns, indices };
  });
  return { plans, labelIndex };
}

export async function openCsv(options: CsvOptions): Promise<HoldoutSource> {
  const header = await readHeader(options.file, options.shown);
  const { plans, labelIndex } = planColumns(header, options);
  return {
    file: options.file,
    format: 'csv',
    featureNames: Object.fromEntries(plans.map((p) => [p.input.name, p.columns])),
    async *rows(): AsyncGenerator<HoldoutRow> {
      let isHeader = true;
      for await (const { line, cells: record } of csvRecords(options.file)) {
        if (isHeader) {
          isHeader = false;
          continue;
        }
        const where = `row ${line}`;
        if (record.length !== header.length) {
          throw inputError(`${options.shown} ${where}: ${record.length} cells, the header has ${header.length}`, 'every row needs a value for every column');
        }
        const inputs: Record<string, (number | string)[]> = {};
        const shapes: Record<string, number[]> = {};
        for (const plan of plans) {
          const values = new Array<number | string>(plan.indices.length);
          for (let j = 0; j < plan.indices.length; j++) {
            const raw = record[plan.indices[j]];
            const value = parseValue(raw, plan.input.datatype);
            if (value === undefined) {
              throw inputError(
                `${options.shown} ${where}, column '${plan.columns[j]}': ${valueProblem(raw.trim(), plan.input.datatype)}`,
                'fix or drop the row',
              );
            }
            values[j] = value;
          }
          inputs[plan.input.name] = values;
          shapes[plan.input.name] = plan.input.rowShape;
        }
        const label = labelIndex === undefined ? '' : record[labelIndex].trim();
        if (label === '' && labelIndex !== undefined)
          throw inputError(`${options.shown} ${where}, column '${options.label}': the label is empty`, 'fix or drop the row');
        yield { where, inputs, shapes, label };
      }
    },
  };
}
