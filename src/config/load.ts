import { cosmiconfig, defaultLoaders, type Loader } from 'cosmiconfig';
import { randomUUID } from 'node:crypto';
import { readFile, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { inputError, MlopsError, ExitCode } from '../errors.js';
import type { Config } from './defaults.js';
import { applyDefaults } from './normalize.js';
import { configSchema, describeIssues, type ParsedConfig } from './schema.js';

export interface LoadedConfig {
  config: Config;
  /** The file the config came from, or null when defaults alone apply. */
  filepath: string | null;
  /** Relative paths in the config are resolved from here. */
  baseDir: string;
}

const MODULE = 'mlops';

export const CONFIG_SEARCH_PLACES = [
  'mlops.config.json',
  'mlops.config.yaml',
  'mlops.config.yml',
  'mlops.config.js',
  'mlops.config.mjs',
  'mlops.config.cjs',
  'mlops.config.ts',
  '.mlopsrc',
  '.mlopsrc.json',
  '.mlopsrc.yaml',
  '.mlopsrc.yml',
  '.mlopsrc.js',
  '.mlopsrc.ts',
  'package.json',
];

/**
 * TypeScript configs are compiled with esbuild (already a dependency) rather
 * than cosmiconfig's default loader, which needs the typescript package.
 */
const loadTs: Loader = async (filepath, content) => {
  const { transform } = await import('esbuild');
  const { code } = await transform(content, { loader: 'ts', format: 'esm', target: 'node20', sourcefile: filepath });
  const compiled = path.join(path.dirname(filepath), `.mlops.config.${randomUUID()}.mjs`);
  await writeFile(compiled, code);
  try {
    const module = (await import(pathToFileURL(compiled).href)) as { default?: unknown };
    return module.default ?? module;
  } finally {
    await unlink(compiled).catch(() => undefined);
  }
};

export { applyDefaults };

export async function loadConfig(options: { cwd: string; configPath?: string }): Promise<LoadedConfig> {
  const explorer = cosmiconfig(MODULE, {
    searchPlaces: CONFIG_SEARCH_PLACES,
    searchStrategy: 'none',
    loaders: { ...defaultLoaders, '.ts': loadTs, '.mts': loadTs },
    cache: false,
  });
  let found: { config: unknown; filepath: string; isEmpty?: boolean } | null;
  const shown = options.configPath ?? 'config';
  try {
    found = options.configPath ? await explorer.load(path.resolve(options.cwd, options.configPath)) : await explorer.search(options.cwd);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw inputError(`config file not found: ${shown}`, 'check the --config path, or run `mlops init --model <file>`');
    throw inputError(
      `could not read ${await syntaxErrorAt(error as Error, options.cwd)}`,
      'fix the syntax error; JSON allows no comments or trailing commas',
      error,
    );
  }
  if (!found || found.isEmpty) {
    return { config: applyDefaults({}), filepath: found?.filepath ?? null, baseDir: options.cwd };
  }
  const name = path.relative(options.cwd, found.filepath) || found.filepath;
  const raw = validateConfig(found.config, name);
  return { config: applyDefaults(raw), filepath: found.filepath, baseDir: path.dirname(found.filepath) };
}

/**
 * "mlops.config.json line 4, column 3: Expected double-quoted property name": cosmiconfig's JSON error
 * gives a position and a code frame over several lines; the one line shown names the place.
 */
async function syntaxErrorAt(error: Error, cwd: string): Promise<string> {
  const message = error.message;
  const file = /JSON Error in (.+?):\s*$/m.exec(message)?.[1];
  const parse = /^(.*?) in JSON at position (\d+)/m.exec(message);
  if (!file || !parse) return `config: ${message.split('\n').find((l) => l.trim()) ?? message}`;
  const text = await readFile(file, 'utf8').catch(() => '');
  const before = text.slice(0, Number(parse[2]));
  const line = before.split('\n').length;
  const column = before.length - before.lastIndexOf('\n');
  return `${path.relative(cwd, file) || file} line ${line}, column ${column}: ${parse[1].trim()}`;
}

/** Keys starting with "//" are comments (as in package.json); mlops.config.example.json uses them. */
function stripComments(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(stripComments);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value)
      .filter(([key]) => !key.startsWith('//'))
      .map(([key, v]) => [key, stripComments(v)]),
  );
}

/** The config checked, with the schema's defaults filled in; or every problem at once, each with its field path. */
export function validateConfig(value: unknown, source: string): ParsedConfig {
  const result = configSchema.safeParse(stripComments(value));
  if (result.success) return result.data;
  const problems = describeIssues(result.error).flatMap((line) => line.split('\n'));
  const heading = problems.length === 1 ? `${source}: ${problems[0]}` : `${source} has ${problems.length} problems:`;
  throw new MlopsError(heading, {
    exitCode: ExitCode.badInput,
    problems,
    details: problems.length === 1 ? undefined : problems.map((p) => `  ${p}`).join('\n'),
    hint: 'every field is documented in mlops.config.example.json',
  });
}
