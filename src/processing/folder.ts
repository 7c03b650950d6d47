/**
 * A model given as the folder a Hugging Face export writes (`optimum-cli export onnx`, or any
 * `save_pretrained`): `model.onnx` (or the one .onnx file there) with, beside it, the files that
 * say how raw inputs become tensors and outputs become labels. The folder is the whole spec.
 */
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { inputError } from '../errors.js';

/** The files read beside the model, in the order they are listed (labels, SBOM). */
export const FOLDER_FILES = ['config.json', 'preprocessor_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'] as const;
export type FolderFileName = (typeof FOLDER_FILES)[number];

/** The largest processing file read (a tokenizer.json of a 250k-word vocabulary is ~17 MB). */
const MAX_FOLDER_FILE_BYTES = 64 * 2 ** 20;

export interface FolderFile {
  name: FolderFileName;
  /** Absolute path. */
  path: string;
  sha256: string;
  sizeBytes: number;
  /** The parsed JSON. */
  json: Record<string, unknown>;
}

export interface ModelFolder {
  /** The folder; the model file's own folder when a file was named. */
  dir: string;
  /** The files found beside the model, by name. */
  files: Partial<Record<FolderFileName, FolderFile>>;
}

/** Reads the processing files beside a model file; each must be a JSON object. */
export async function readModelFolder(modelFile: string): Promise<ModelFolder> {
  const dir = path.dirname(modelFile);
  // A model in an onnx/ subfolder (Transformers.js-style exports) has its processing files one folder up.
  const dirs = path.basename(dir) === 'onnx' ? [dir, path.dirname(dir)] : [dir];
  const files: ModelFolder['files'] = {};
  for (const name of FOLDER_FILES) {
    let file = path.join(dir, name);
    let info = await stat(file).catch(() => undefined);
    for (const other of dirs.slice(1)) {
      if (info?.isFile()) break;
      file = path.join(other, name);
      info = await stat(file).catch(() => undefined);
    }
    if (!info?.isFile()) continue;
    if (info.size > MAX_FOLDER_FILE_BYTES)
      throw inputError(
        `${file}: ${info.size} bytes, over the ${MAX_FOLDER_FILE_BYTES / 2 ** 20} MiB read for a processing file`,
        "remove it if it is not the model's",
      );
    const bytes = await readFile(file);
    let json: unknown;
    try {
      json = JSON.parse(bytes.toString('utf8'));
    } catch (error) {
      throw inputError(
        `${file}: not valid JSON (${(error as Error).message.split('\n')[0]})`,
        `fix or remove ${name}; the model folder's files must be what the export wrote`,
      );
    }
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw inputError(`${file}: expected a JSON object`, `fix or remove ${name}`);
    files[name] = {
      name,
      path: file,
      sha256: createHash('sha256').update(bytes).digest('hex'),
      sizeBytes: bytes.byteLength,
      json: json as Record<string, unknown>,
    };
  }
  return { dir, files };
}
