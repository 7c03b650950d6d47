import { loadModel } from '../model/session.js';
import { VERSION } from '../version.js';
import { createInferenceServer, type InferenceServer } from './app.js';
import type { ServeOptions } from './options.js';
import { environmentError } from '../errors.js';

export interface RunningServer {
  server: InferenceServer;
  url: string;
  port: number;
  modelName: string;
  /** Shuts down gracefully and releases the model. */
  stop(): Promise<{ forced: boolean }>;
}

export async function startServer(options: ServeOptions, log: (line: string) => void): Promise<RunningServer> {
  const model = await loadModel({
    path: options.modelPath,
    name: options.modelName,
    version: options.modelVersion,
    expectedSha256: options.expectedSha256,
    intraOpThreads: options.intraOpThreads,
  });
  const server = createInferenceServer({
    model,
    maxBodyBytes: options.maxBodyBytes,
    batching: options.batching,
    serverVersion: VERSION,
    log,
  });
  let address: { url: string; port: number };
  try {
    address = await server.listen(options.port, options.host);
  } catch (error) {
    await model.release();
    const code = (error as NodeJS.ErrnoException).code;
    throw environmentError(
      `cannot listen on ${options.host}:${options.port}: ${code === 'EADDRINUSE' ? 'the port is in use' : (error as Error).message}`,
      code === 'EADDRINUSE' ? 'pick another port with --port (0 picks a free one)' : undefined,
    );
  }
  return {
    server,
    ...address,
    modelName: model.name,
    async stop() {
      const outcome = await server.shutdown(options.shutdownTimeoutMs);
      await model.release();
      return outcome;
    },
  };
}

/** Serves until SIGTERM or SIGINT, then shuts down gracefully. Resolves with how it ended. */
export function untilSignal(running: RunningServer, log: (line: string) => void): Promise<{ signal: string; forced: boolean }> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      log(`${signal} received: finishing requests in flight`);
      void running.stop().then(({ forced }) => resolve({ signal, forced }));
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
