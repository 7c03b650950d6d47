/**
 * The inference server's entry point inside an image: configured by the
 * environment alone (see SERVER_ENV), no CLI, no config file.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { applyDefaults } from '../config/normalize.js';
import { isMlopsError } from '../errors.js';
import { applyImageArguments, applyServerEnv, serveOptionsFromConfig } from './options.js';
import { reportInitError, runLambdaRuntime } from './lambda-runtime.js';
import { startServer, untilSignal } from './run.js';

const log = (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);

// The image's batch mode: a separate bundle beside this one (the server bundle stays as small as it was).
if (process.env.MLOPS_MODE === 'batch') {
  const candidates = ['./batch.mjs', '../batch/image-entry.js'].map((p) => new URL(p, import.meta.url));
  const entry = candidates.find((u) => existsSync(fileURLToPath(u)));
  if (!entry) {
    log(`error: MLOPS_MODE=batch, but this image has no batch mode (${fileURLToPath(candidates[0])} is missing)`);
    process.exit(70);
  }
  const { runImageBatch } = (await import(entry.href)) as { runImageBatch: (env: NodeJS.ProcessEnv) => Promise<never> };
  await runImageBatch(process.env);
}

const runtimeApi = process.env.AWS_LAMBDA_RUNTIME_API;
let started = false;
try {
  const options = applyImageArguments(applyServerEnv(serveOptionsFromConfig(applyDefaults({}), '/'), process.env), process.argv.slice(2), process.env);
  // In a container the server must be reachable from outside it. Under Lambda only the Runtime API loop
  // talks to it, so it binds loopback whatever HOST says (the image sets HOST=0.0.0.0 for the other case).
  if (runtimeApi) options.host = '127.0.0.1';
  else if (!process.env.HOST) options.host = '0.0.0.0';
  if (runtimeApi) options.grpcPort = 0;
  const running = await startServer(options, log);
  log(
    `serving model '${running.modelName}' on ${running.url}${running.grpcAddress ? ` and gRPC ${running.grpcAddress}` : ''} (batching ${running.batching ? 'on' : 'off'})`,
  );
  started = true;
  if (runtimeApi) {
    log(`answering AWS Lambda events from ${runtimeApi}`);
    await runLambdaRuntime({ runtimeApi, serverUrl: running.url, log });
  }
  const { forced } = await untilSignal(running, log);
  log(forced ? 'shutdown timed out; open connections were closed' : 'shut down cleanly');
  process.exit(forced ? 1 : 0);
} catch (error) {
  // A failure to start is Lambda's init error; a lost Runtime API later just ends the process (Lambda starts another).
  if (runtimeApi && !started) await reportInitError(runtimeApi, error as Error);
  log(`error: ${isMlopsError(error) ? error.message : String((error as Error)?.stack ?? error)}`);
  if (isMlopsError(error) && error.hint) log(`hint: ${error.hint}`);
  process.exit(isMlopsError(error) ? error.exitCode : 70);
}
