/**
 * `mlops batch --image <ref>`: the version's image scores, in its batch mode, under the local Docker
 * engine: the model, its processing and the ONNX Runtime that serve are the ones that score. Local
 * input and output are mounted (the input read-only); a bucket's URIs pass through, with the storage
 * SDKs' settings from this environment.
 */
import { mkdir, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { connectDocker, tail } from '../docker/client.js';
import { demultiplex, describeExit } from '../docker/container.js';
import { environmentError, ExitCode, inputError, MlopsError } from '../errors.js';
import { isObjectUri } from '../storage/object-store.js';
import { batchModeEnv } from './image-mode.js';
import type { BatchReport, RunBatchOptions } from './run-batch.js';

/** The storage SDKs' settings a container needs to reach the same buckets (no files: a credentials file is not mounted). */
const PASSED = /^(AWS_|AZURE_STORAGE_|MLOPS_AZURE_BLOB_ENDPOINT$|STORAGE_EMULATOR_HOST$|GOOGLE_CLOUD_PROJECT$)/;

/** A local path as the container sees it: its folder mounted at `at`. */
async function mount(where: string, cwd: string, at: string, readOnly: boolean): Promise<{ inside: string; bind: string }> {
  const absolute = path.resolve(cwd, where);
  const info = await stat(absolute).catch(() => undefined);
  const isFolder = where.endsWith('/') || Boolean(info?.isDirectory());
  if (readOnly && !info) throw inputError(`${where}: not found`, 'check the --input path');
  const folder = isFolder ? absolute : path.dirname(absolute);
  if (!readOnly) await mkdir(folder, { recursive: true });
  return { inside: isFolder ? `${at}/` : `${at}/${path.basename(absolute)}`, bind: `${folder}:${at}${readOnly ? ':ro' : ''}` };
}

export async function runInImage(image: string, options: Omit<RunBatchOptions, 'model'>): Promise<BatchReport> {
  if (/[*?[{]/.test(options.input) && !isObjectUri(options.input))
    throw inputError(`--input ${options.input}: a glob, with --image`, 'give the folder, or score without --image');
  const docker = await connectDocker(options.env);
  const input = isObjectUri(options.input) ? { inside: options.input, bind: undefined } : await mount(options.input, options.cwd, '/batch/input', true);
  const output = isObjectUri(options.output) ? { inside: options.output, bind: undefined } : await mount(options.output, options.cwd, '/batch/output', false);
  const env = {
    ...batchModeEnv({
      input: input.inside,
      output: output.inside,
      shards: options.shardCount ?? 0,
      format: options.format,
      idColumn: options.idColumn,
      columns: Array.isArray(options.columns) ? options.columns : undefined,
      batchSize: options.batchSize,
      workers: options.workers,
      maxRejectRate: options.maxRejectRate,
      indexes: options.only,
    }),
    ...Object.fromEntries(Object.entries(options.env).filter(([k, v]) => PASSED.test(k) && v !== undefined)),
  };
  // One shard of a job (--shard i/n) is the Indexed Job's index; without it the container runs them all.
  if (options.only) env.JOB_COMPLETION_INDEX = '0';
  if (!options.shardCount) delete env.MLOPS_BATCH_SHARDS;
  const container = await docker
    .createContainer({
      Image: image,
      Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
      // As this user: the output is theirs, not root's or the image's.
      User: `${os.userInfo().uid}:${os.userInfo().gid}`,
      HostConfig: { Binds: [input.bind, output.bind].filter((b): b is string => Boolean(b)), NetworkMode: 'host' },
    })
    .catch((error: Error & { statusCode?: number }) => {
      if (error.statusCode === 404) throw inputError(`--image ${image}: no such image here`, 'build it with `mlops build`, or pull it');
      throw environmentError(`cannot start ${image}: ${error.message}`);
    });
  try {
    options.log(`scoring in ${image}`);
    await container.start();
    const { StatusCode: code } = (await container.wait()) as { StatusCode: number };
    const stdout = demultiplex(await container.logs({ stdout: true, stderr: false })).trim();
    const stderr = demultiplex(await container.logs({ stdout: false, stderr: true }));
    if (code === 0 || code === 1) {
      const report = JSON.parse(stdout.split('\n').pop() ?? '{}') as BatchReport;
      // Paths as the user named them, not as the container saw them.
      return { ...report, input: options.input, output: options.output };
    }
    const lastError = /error: (.*)\n(?:.*hint: (.*))?/.exec(stderr.split('\n').slice(-3).join('\n'));
    if (code === ExitCode.badInput && lastError) throw inputError(`${image}: ${lastError[1]}`, lastError[2]);
    throw new MlopsError(`batch mode in ${image} ended with code ${code} (${describeExit(await container.inspect())})`, {
      exitCode: code === ExitCode.badInput ? ExitCode.badInput : ExitCode.environment,
      details: tail(stderr),
    });
  } finally {
    await container.remove({ force: true }).catch(() => undefined);
  }
}
