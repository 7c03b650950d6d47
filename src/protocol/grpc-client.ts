import * as grpc from '@grpc/grpc-js';
import { inferenceProto, type GrpcInferRequest, type GrpcInferResponse } from './grpc.js';

type Unary<Req, Res> = (request: Req, callback: (error: grpc.ServiceError | null, response: Res) => void) => void;

export interface InferenceClient {
  ModelMetadata: Unary<
    { name: string; version?: string },
    { name: string; inputs?: { name: string; datatype: string; shape?: number[] }[]; outputs?: { name: string; datatype: string; shape?: number[] }[] }
  >;
  ModelInfer: Unary<GrpcInferRequest, GrpcInferResponse>;
  ServerLive: Unary<Record<string, never>, { live?: boolean }>;
  close(): void;
}

/** A GRPCInferenceService client from the same proto the server loads; no message size limit on answers. */
export function inferenceClient(address: string, credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure()): InferenceClient {
  const definition = grpc.loadPackageDefinition(inferenceProto()) as unknown as { inference: { GRPCInferenceService: grpc.ServiceClientConstructor } };
  return new definition.inference.GRPCInferenceService(address, credentials, {
    'grpc.max_receive_message_length': -1,
    'grpc.max_send_message_length': -1,
  }) as unknown as InferenceClient;
}

/** One unary call as a promise. */
export function call<Req, Res>(
  client: InferenceClient,
  method: Unary<Req, Res>,
  request: Req,
  deadlineMs = 30_000,
  metadata = new grpc.Metadata(),
): Promise<Res> {
  return new Promise((resolve, reject) => {
    (method as unknown as (r: Req, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, res: Res) => void) => void).call(
      client,
      request,
      metadata,
      { deadline: Date.now() + deadlineMs },
      (error, response) => (error ? reject(error) : resolve(response)),
    );
  });
}
