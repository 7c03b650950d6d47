import * as grpc from '@grpc/grpc-js';
import { grpcChannelCredentials, grpcMetadata, type ClientSecurity } from '../protocol/client-security.js';
import type { Send } from './load.js';

export const MODEL_INFER = '/inference.GRPCInferenceService/ModelInfer';

/**
 * The load generator's gRPC client: ModelInfer requests serialized once
 * before the run and answers left undecoded (only the status counts), so the
 * client spends its CPU on the wire, not on protobuf, as the HTTP sender does.
 * Calls spread over `channels` connections.
 */
export function grpcSender(
  address: string,
  messages: Uint8Array[],
  channels: number,
  security: ClientSecurity & { secure?: boolean } = {},
): { send: Send; close: () => Promise<void> } {
  const identity = (b: Buffer) => b;
  const credentials = grpcChannelCredentials(Boolean(security.secure), security);
  const metadata = grpcMetadata(security);
  const clients = Array.from(
    { length: Math.max(1, channels) },
    // A distinct option per client keeps grpc-js from sharing one subchannel between them.
    (_, i) => new grpc.Client(address, credentials, { 'grpc.max_receive_message_length': -1, 'mlops.channel': i }),
  );
  const payloads = messages.map((m) => Buffer.from(m.buffer, m.byteOffset, m.byteLength));
  const send: Send = (i) =>
    new Promise((resolve) => {
      clients[i % clients.length].makeUnaryRequest(
        MODEL_INFER,
        identity,
        identity,
        payloads[i % payloads.length],
        metadata,
        (error: grpc.ServiceError | null) =>
          resolve(error ? { kind: `grpc_${grpc.status[error.code] ?? error.code}`.toLowerCase(), message: error.details } : null),
      );
    });
  return {
    send,
    close: async () => {
      for (const c of clients) c.close();
    },
  };
}
