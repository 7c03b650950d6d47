/** A gRPC client that says only the status code, and a poll until a check holds, for the auth and TLS tests. */
import * as grpc from '@grpc/grpc-js';
import { inferenceProto } from '../../src/protocol/grpc.js';

export function grpcClient(address: string, credentials = grpc.credentials.createInsecure()) {
  const pkg = grpc.loadPackageDefinition(inferenceProto()) as unknown as { inference: { GRPCInferenceService: grpc.ServiceClientConstructor } };
  const client = new pkg.inference.GRPCInferenceService(address, credentials) as unknown as Record<string, (...args: unknown[]) => void> & { close(): void };
  const rpc = (method: string, request: unknown, token?: string): Promise<string> =>
    new Promise((resolve) => {
      const metadata = new grpc.Metadata();
      if (token !== undefined) metadata.set('authorization', token);
      client[method](request, metadata, { deadline: Date.now() + 5000 }, (error: grpc.ServiceError | null) => resolve(error ? grpc.status[error.code] : 'OK'));
    });
  return { rpc, close: () => client.close() };
}

export async function waitFor(check: () => Promise<boolean> | boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}
