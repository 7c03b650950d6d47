import path from 'node:path';
import { ExitCode, inputError } from '../errors.js';
import { applyServerEnv, serveOptionsFromConfig, type ServeOptions } from '../server/options.js';
import { startServer, untilSignal } from '../server/run.js';
import type { CommandContext } from './context.js';

export interface ServeFlags {
  model?: string;
  host?: string;
  port?: string;
  grpcPort?: string;
  workers?: string;
  name?: string;
  sha256?: string;
  batching?: boolean;
  maxBatchSize?: string;
  batchWaitMs?: string;
  threads?: string;
  profile?: string;
  authTokenFile?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsClientCa?: string;
  repository?: string;
}

function flagInt(name: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw inputError(`--${name} ${value}: expected an integer from ${min} to ${max}`, 'see `mlops serve --help`');
  return n;
}

/** Flags over environment over config over defaults. */
export function resolveServeOptions(flags: ServeFlags, base: ServeOptions, env: NodeJS.ProcessEnv, cwd: string): ServeOptions {
  const options = applyServerEnv(base, env);
  if (flags.model) options.modelPath = path.resolve(cwd, flags.model);
  if (flags.host) options.host = flags.host;
  options.port = flagInt('port', flags.port, 0, 65535) ?? options.port;
  options.grpcPort = flagInt('grpc-port', flags.grpcPort, 0, 65535) ?? options.grpcPort;
  options.workers = flagInt('workers', flags.workers, 0, 64) ?? options.workers;
  if (flags.name) options.modelName = flags.name;
  if (flags.sha256) options.expectedSha256 = flags.sha256.toLowerCase();
  if (flags.batching === false) options.batching.enabled = false;
  options.batching.maxBatchSize = flagInt('max-batch-size', flags.maxBatchSize, 1, 65536) ?? options.batching.maxBatchSize;
  options.batching.maxWaitMs = flagInt('batch-wait-ms', flags.batchWaitMs, 0, 10_000) ?? options.batching.maxWaitMs;
  options.intraOpThreads = flagInt('threads', flags.threads, 0, 1024) ?? options.intraOpThreads;
  if (flags.profile !== undefined) options.profilePath = flags.profile && path.resolve(cwd, flags.profile);
  if (flags.authTokenFile) options.auth.tokenFile = path.resolve(cwd, flags.authTokenFile);
  if (flags.tlsCert) options.tls.cert = path.resolve(cwd, flags.tlsCert);
  if (flags.tlsKey) options.tls.key = path.resolve(cwd, flags.tlsKey);
  if (flags.tlsClientCa) options.tls.clientCa = path.resolve(cwd, flags.tlsClientCa);
  if (flags.repository) options.repositoryFile = path.resolve(cwd, flags.repository);
  // One model's flags say nothing of several: refused rather than applied to the first.
  const oneModel = (['model', 'name', 'sha256', 'profile'] as const).filter((f) => flags[f] !== undefined);
  if (oneModel.length > 0 && (options.repositoryFile || options.models.length > 0)) {
    throw inputError(
      `--${oneModel[0]} names one model, and this server serves several (${options.repositoryFile ? 'a repository file' : 'config models'})`,
      'set each model in the repository file or config models instead',
    );
  }
  return options;
}

export async function run(flags: ServeFlags, ctx: CommandContext): Promise<number> {
  const { config, baseDir } = await ctx.config();
  const options = resolveServeOptions(flags, serveOptionsFromConfig(config, baseDir), ctx.env, ctx.cwd);
  const log = (line: string) => ctx.reporter.info(line);
  const running = await startServer(options, log);
  ctx.reporter.result(
    {
      url: running.url,
      grpc: running.grpcAddress ?? null,
      model: running.modelName,
      models: running.models,
      batching: running.batching,
      workers: running.workers,
      placement: running.placement,
    },
    (r, s) =>
      `Serving ${s.bold(r.models.join(', '))} at ${s.cyan(r.url)}${r.grpc ? ` and gRPC ${s.cyan(r.grpc)}` : ''} (batching ${r.batching ? 'on' : 'off'}; Ctrl-C to stop)`,
  );
  const { forced } = await untilSignal(running, log);
  ctx.reporter.info(forced ? 'shutdown timed out; open connections were closed' : 'stopped');
  return forced ? ExitCode.environment : ExitCode.ok;
}
