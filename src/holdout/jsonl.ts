import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { inputError } from '../errors.js';
import type { HoldoutRow, HoldoutSource, InputLayout } from './types.js';
import { parseValue, valueProblem } from './values.js';

export interface JsonlOptions {
  file: string;
  shown: string;
  layouts: InputLayout[];
  label: string;
  /** Lines without a label are accepted (a reference profile needs no labels). */
  labelOptional?: boolean;
}

/** The shape of nested arrays, checking that they are not ragged. */
export function shapeOf(value: unknown): number[] | null {
  if (!Array.isArray(value)) return [];
  if (value.length === 0) return [0];
  const inner = shapeOf(value[0]);
  if (inner === null) return null;
  for (let i = 1; i < value.length; i++) {
    const other = shapeOf(value[i]);
    if (other === null || other.length !== inner.length || other.some((d, j) => d !== inner[j])) return null;
  }
  return [value.length, ...inner];
}

export function openJsonl(options: JsonlOptions): HoldoutSource {
  const { shown, layouts, label } = options;
  return {
    file: options.file,
    format: 'jsonl',
    featureNames: Object.fromEntries(
      layouts.map((l) => [l.name, l.rowSize === null ? [l.name] : Array.from({ length: l.rowSize }, (_, i) => (l.rowSize === 1 ? l.name : `${l.name}[${i}]`))]),
    ),
    async *rows(): AsyncGenerator<HoldoutRow> {
      const lines = createInterface({ input: createReadStream(options.file), crlfDelay: Infinity });
      let number = 0;
      const firstShapes: Record<string, number[]> = {};
      for await (const line of lines) {
        number++;
        if (line.trim() === '') continue;
        const where = `line ${number}`;
        let row: unknown;
        try {
          row = JSON.parse(line);
        } catch (error) {
          throw inputError(`${shown} ${where}: not valid JSON (${(error as Error).message})`, 'each line must be one JSON object');
        }
        if (typeof row !== 'object' || row === null || Array.isArray(row)) {
          throw inputError(`${shown} ${where}: expected a JSON object with a key per model input and '${label}'`);
        }
        const object = row as Record<string, unknown>;
        const inputs: Record<string, (number | string)[]> = {};
        const shapes: Record<string, number[]> = {};
        for (const layout of layouts) {
          if (!(layout.name in object)) {
            throw inputError(
              `${shown} ${where}: missing key '${layout.name}' (model input)`,
              `every line needs ${layouts.map((l) => `'${l.name}'`).join(', ')} and '${label}'`,
            );
          }
          const value = object[layout.name];
          const shape = shapeOf(value);
          if (shape === null) throw inputError(`${shown} ${where}, key '${layout.name}': the nested arrays are ragged`);
          // A flat list may stand for a row of any shape with the same number of elements.
          const size = shape.reduce((n, d) => n * d, 1);
          let rowShape = shape;
          if (layout.rowSize !== null && shape.length === 1 && layout.rowShape.length !== 1 && size === layout.rowSize) rowShape = layout.rowShape;
          if (layout.rowShape.length === 0 && shape.length === 1 && shape[0] === 1) rowShape = [];
          const fits = rowShape.length === layout.rowShape.length && layout.rowShape.every((d, i) => d === -1 || d === rowShape[i]);
          if (!fits) {
            throw inputError(
              `${shown} ${where}, key '${layout.name}': a row of shape [${shape.join(', ')}], the model wants [${layout.rowShape.join(', ')}]`,
              '-1 is any size; the batch dimension is not part of a row',
            );
          }
          firstShapes[layout.name] ??= rowShape;
          if (firstShapes[layout.name].some((d, i) => d !== rowShape[i])) {
            throw inputError(
              `${shown} ${where}, key '${layout.name}': a row of shape [${rowShape.join(', ')}], earlier rows have [${firstShapes[layout.name].join(', ')}]`,
              'rows are sent in batches, so every row needs the same shape',
            );
          }
          const flat = Array.isArray(value) ? (value as unknown[]).flat(Infinity) : [value];
          const values = new Array<number | string>(flat.length);
          for (let i = 0; i < flat.length; i++) {
            const value = parseValue(flat[i], layout.datatype);
            if (value === undefined)
              throw inputError(`${shown} ${where}, key '${layout.name}' element ${i}: ${valueProblem(flat[i], layout.datatype)}`, 'fix or drop the line');
            values[i] = value;
          }
          inputs[layout.name] = values;
          shapes[layout.name] = rowShape;
        }
        const labelValue = options.labelOptional && !(label in object) ? '' : object[label];
        if (typeof labelValue !== 'number' && typeof labelValue !== 'string') {
          throw inputError(`${shown} ${where}: missing or non-scalar '${label}' (the label)`, 'every line needs a label value');
        }
        yield { where, inputs, shapes, label: labelValue };
      }
    },
  };
}
