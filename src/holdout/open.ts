import { stat } from 'node:fs/promises';
import path from 'node:path';
import { inputError } from '../errors.js';
import type { ServableTensor } from '../model/session.js';
import { openCsv } from './csv.js';
import { openJsonl } from './jsonl.js';
import { openNpy } from './npy.js';
import { IMAGE_COLUMNS, openImageFolder, openMediaTable, TEXT_COLUMNS } from './media.js';
import { processingFor, type InputFacts, type ProcessingOverrides, type ProcessingPlan } from '../processing/plan.js';
import type { HoldoutSource, InputLayout } from './types.js';

export function inputLayouts(inputs: Pick<ServableTensor, 'name' | 'datatype' | 'shape'>[]): InputLayout[] {
  return inputs.map((input) => {
    const rowShape = input.shape.slice(1);
    return {
      name: input.name,
      datatype: input.datatype,
      rowShape,
      rowSize: rowShape.some((d) => d < 0) ? null : rowShape.reduce((n, d) => n * d, 1),
    };
  });
}

export interface OpenHoldoutOptions {
  cwd: string;
  holdout: string;
  /** .npy labels, beside an .npy holdout. */
  labels?: string;
  inputs: Pick<ServableTensor, 'name' | 'datatype' | 'shape'>[];
  label: string;
  /** Accept data without labels: for a reference profile, which needs none. */
  labelOptional?: boolean;
  features: string[] | Record<string, string[]>;
  /** The model's preprocessing, when it takes images or text: image folders and image/text columns read through it. */
  processing?: ProcessingPlan;
  /** Else the model file or folder it is read from, with the config's model.preprocess over the folder's files. */
  model?: { path: string; preprocess?: ProcessingOverrides['preprocess']; postprocess?: ProcessingOverrides['postprocess'] };
  onFacts?: (facts: InputFacts) => void;
}

/**
 * Opens a holdout by its extension: .csv, .jsonl/.ndjson, or .npy with --labels; for a model that
 * takes images or text, also a folder of images per class, or a table with an image or text column.
 */
export async function openHoldout(options: OpenHoldoutOptions): Promise<HoldoutSource> {
  const file = path.resolve(options.cwd, options.holdout);
  const shown = options.holdout;
  const info = await stat(file).catch(() => undefined);
  if (!options.processing && options.model) {
    options = {
      ...options,
      processing: await processingFor(
        path.resolve(options.cwd, options.model.path),
        { inputs: options.inputs, outputs: [] },
        { preprocess: options.model.preprocess },
      ),
    };
  }
  if (info?.isDirectory()) {
    if (!options.processing?.image)
      throw inputError(
        `${shown} is a folder, and the model takes no images`,
        'a folder holdout is images in one subfolder per class; for tensors pass a .csv, .jsonl or .npy file',
      );
    return openImageFolder({ file, shown, plan: options.processing, label: options.label, labelOptional: options.labelOptional, onFacts: options.onFacts });
  }
  if (!info?.isFile()) throw inputError(`holdout not found: ${shown}`, 'check the --holdout path');
  const layouts = inputLayouts(options.inputs);
  const extension = path.extname(file).toLowerCase();
  const table = extension === '.csv' ? 'csv' : extension === '.jsonl' || extension === '.ndjson' ? 'jsonl' : undefined;
  if (table && options.processing && !options.labels) {
    const media = await openMediaTable({
      file,
      shown,
      plan: options.processing,
      label: options.label,
      labelOptional: options.labelOptional,
      format: table,
      onFacts: options.onFacts,
    });
    if (media) return media;
    // A model that takes images or texts and a table without their column: say which column is missing,
    // not how many tensor columns would be (12,288 for a small image).
    // (A JSONL may hold tensors, pre-tokenized ids say: it goes on to the tensor reader.)
    const kind = options.processing.image ? 'image' : options.processing.text ? 'text' : undefined;
    if (kind && table === 'csv') {
      const names = kind === 'image' ? IMAGE_COLUMNS : TEXT_COLUMNS;
      throw inputError(
        `${shown}: no ${kind} column (${names.join(', ')})`,
        `name the column that holds the ${kind === 'image' ? "images' paths" : 'texts'} ${names[0]}; the label goes in '${options.label}'`,
      );
    }
  }
  if (extension === '.npy') {
    if (!options.labels && !options.labelOptional) throw inputError(`${shown} is an .npy holdout: --labels <y.npy> is needed too`);
    return openNpy({ file, shown, labelsFile: options.labels && path.resolve(options.cwd, options.labels), labelsShown: options.labels, layouts });
  }
  if (options.labels) throw inputError('--labels goes with an .npy holdout only', 'CSV and JSONL holdouts carry their labels');
  if (extension === '.csv') return openCsv({ file, shown, layouts, label: options.label, labelOptional: options.labelOptional, features: options.features });
  if (extension === '.jsonl' || extension === '.ndjson') return openJsonl({ file, shown, layouts, label: options.label, labelOptional: options.labelOptional });
  throw inputError(`${shown}: unknown holdout format '${extension || '(none)'}'`, 'use .csv (with a header), .jsonl, or .npy with --labels');
}
