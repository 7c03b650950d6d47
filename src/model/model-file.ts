import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { inputError } from '../errors.js';

/**
 * The .onnx file a model path names: the path itself when it is a file; in a folder, its
 * `model.onnx`, else its one .onnx file, else `onnx/model.onnx`. Undefined when the path is not a folder.
 */
export async function modelFileInFolder(absolute: string, shown: string): Promise<string | undefined> {
  const info = await stat(absolute).catch(() => undefined);
  if (!info?.isDirectory()) return undefined;
  const names = (await readdir(absolute)).filter((n) => n.toLowerCase().endsWith('.onnx')).sort();
  if (names.includes('model.onnx')) return path.join(absolute, 'model.onnx');
  if (names.length === 1) return path.join(absolute, names[0]);
  // Transformers.js-style exports keep the model in an onnx/ subfolder (model.onnx beside its quantized variants).
  if (names.length === 0 && (await stat(path.join(absolute, 'onnx', 'model.onnx')).catch(() => undefined))?.isFile())
    return path.join(absolute, 'onnx', 'model.onnx');
  if (names.length === 0)
    throw inputError(
      `${shown} is a folder with no .onnx file in it`,
      'export the model to ONNX into it (optimum-cli export onnx --model ... <folder>) or name the .onnx file',
    );
  throw inputError(
    `${shown} holds ${names.length} .onnx files (${names.slice(0, 4).join(', ')}) and no model.onnx`,
    'name the one to serve: --model <folder>/<file>.onnx',
  );
}
