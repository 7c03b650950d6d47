import { Pool } from 'undici';
import { environmentError, inputError, shownValue } from '../errors.js';
import { isServableDatatype, type Datatype, type TensorData } from '../model/datatypes.js';
import { ModelRunError } from '../model/run-error.js';
import { loadModel, type LoadedModel, type Tensors } from '../model/session.js';
import { decodeGrpcResponse, encodeGrpcRequest, grpcErrorMessage } from '../protocol/grpc.js';
import { call, inferenceClient } from '../protocol/grpc-client.js';
import { authHeaders, grpcChannelCredentials, grpcMetadata, tlsConnectOptions, type ClientSecurity } from '../protocol/client-security.js';
import { encodeTensorData } from '../protocol/json-data.js';
import { BINARY_EXTENSION, decodeRestResponse, encodeRestRequest, HEADER_LENGTH } from '../protocol/rest.js';

export interface TensorSignature {
  name: string;
  datatype: Datatype;
  shape: number[];
  /** The model file's dimension names where it has them (`batch`, `samples`); servers report only sizes. */
  dims?: (number | string)[];
}

/** Output data as plain numbers (or strings), whatever ran the model. */
export type Outputs = Record<string, { data: ArrayLike<number> | string[]; dims: number[] }>;

/** How mlops' clients talk to a server: OIP REST with JSON tensors, REST with binary tensors, or gRPC. */
export const PROTOCOLS = ['rest-json', 'rest-binary', 'grpc'] as const;
export type Protocol = (typeof PROTOCOLS)[number];

export function parseProtocol(value: string | undefined): Protocol | undefined {
  if (value === undefined) return undefined;
  if (!(PROTOCOLS as readonly string[]).includes(value)) throw inputError(`--protocol ${value}: expected ${PROTOCOLS.join(', ')}`);
  return value as Protocol;
}

/** Something that runs the model on a batch: ONNX Runtime in-process, or a server over HTTP or gRPC. */
export interface Predictor {
  modelName: string;
  inputs: TensorSignature[];
  outputs: TensorSignature[];
  /** How a remote predictor talks to its server. */
  protocol?: Protocol;
  predict(feeds: Tensors): Promise<Outputs>;
  close(): Promise<void>;
}

export function asNumbers(datatype: Datatype, data: TensorData | unknown[]): ArrayLike<number> | string[] {
  if (Array.isArray(data)) return data as number[];
  if (datatype === 'INT64' || datatype === 'UINT64' || datatype === 'FP16' || datatype === 'BOOL') return encodeTensorData(datatype, data) as number[];
  return data as ArrayLike<number>;
}

export function localPredictor(model: LoadedModel): Predictor {
  return {
    modelName: model.name,
    inputs: model.inputs,
    outputs: model.outputs,
    async predict(feeds) {
      const result = await model.run(feeds);
      const out: Outputs = {};
      for (const spec of model.outputs) out[spec.name] = { data: asNumbers(spec.datatype, result[spec.name].data), dims: result[spec.name].dims };
      return out;
    },
    close: () => model.release(),
  };
}

export async function openLocalPredictor(modelPath: string, name?: string, cwd?: string): Promise<Predictor> {
  return localPredictor(await loadModel({ path: modelPath, name, cwd }));
}

interface ServerTensor {
  name: string;
  datatype: string;
  shape?: (number | string)[];
}

const signature = (list: ServerTensor[] | undefined, what: string): TensorSignature[] =>
  (list ?? []).map((t) => {
    if (!isServableDatatype(t.datatype)) throw environmentError(`the server reports ${what} '${t.name}' with datatype ${t.datatype}, which mlops cannot send`);
    return { name: t.name, datatype: t.datatype, shape: (t.shape ?? []).map(Number) };
  });

export interface RemoteOptions {
  /** http(s)://host:port[/prefix] for REST, or grpc://host:port for a gRPC-only address. */
  url: string;
  /** host:port of the server's gRPC endpoint, when known besides a REST url. */
  grpcAddress?: string;
  /** Undefined: ask the server (a single-model server names its model). */
  modelName?: string;
  /** One version of a model served in several, addressed at /versions/{v} (gRPC model_version); undefined: the server's split. */
  modelVersion?: string;
  /** Undefined: binary tensors when the server offers them, else JSON; gRPC for a grpc:// url. */
  protocol?: Protocol;
  /** Token, CA and client certificate for a server that asks for them. */
  security?: ClientSecurity;
}

/** A server speaking the Open Inference Protocol: ours, KServe, Triton. */
export async function remotePredictor(options: RemoteOptions): Promise<Predictor> {
  const url = new URL(options.url);
  const { security } = options;
  if (url.protocol === 'grpc:' || url.protocol === 'grpcs:') {
    if (options.protocol && options.protocol !== 'grpc')
      throw inputError(`--protocol ${options.protocol} needs an http(s):// url; ${options.url} is a gRPC address`);
    return grpcPredictor(url.host, options.modelName, url.protocol === 'grpcs:', security, options.modelVersion);
  }
  if (options.protocol === 'grpc') {
    if (!options.grpcAddress) throw inputError('--protocol grpc needs the gRPC address', 'pass --url grpc://host:8081 (grpcs:// for TLS)');
    // The server's gRPC port speaks TLS when its REST port does.
    return grpcPredictor(options.grpcAddress, options.modelName, url.protocol === 'https:', security, options.modelVersion);
  }
  return restPredictor(url, options.url, options.modelName, options.protocol, security, options.modelVersion);
}

async function restPredictor(
  base: URL,
  shown: string,
  configuredName: string | undefined,
  wanted: Protocol | undefined,
  security: ClientSecurity | undefined,
  version?: string,
): Promise<Predictor> {
  const pool = new Pool(base.origin, { connections: 4, connect: tlsConnectOptions(security) });
  const prefix = base.pathname.replace(/\/$/, '');
  const auth = authHeaders(security);
  const request = async (method: 'GET' | 'POST', path: string, body?: Buffer, headers?: Record<string, string>) => {
    try {
      const res = await pool.request({ method, path: prefix + path, body, headers: { ...headers, ...auth } });
      const bytes = Buffer.from(await res.body.arrayBuffer());
      return { status: res.statusCode, bytes, headers: res.headers };
    } catch (error) {
      throw environmentError(`cannot reach the server at ${shown}: ${(error as Error).message}`, 'check the URL and that the server is up', undefined, error);
    }
  };
  const json = (bytes: Buffer): Record<string, unknown> => {
    try {
      return bytes.length ? (JSON.parse(bytes.toString('utf8')) as Record<string, unknown>) : {};
    } catch {
      return { error: bytes.toString('utf8').slice(0, 200) };
    }
  };
  try {
    const server = await request('GET', '/v2');
    if (server.status === 401 || server.status === 429) throw refusedToken(shown, `HTTP ${server.status}`, security);
    const extensions = server.status === 200 ? ((json(server.bytes).extensions as string[] | undefined) ?? []) : [];
    const offersBinary = extensions.includes(BINARY_EXTENSION);
    if (wanted === 'rest-binary' && !offersBinary) {
      throw environmentError(`the server at ${shown} does not offer binary tensors (no '${BINARY_EXTENSION}' in GET /v2)`, 'use --protocol rest-json');
    }
    const protocol: Protocol = wanted ?? (offersBinary ? 'rest-binary' : 'rest-json');
    const modelName = configuredName ?? (await discoverModel(request, json, shown));
    const route = `/v2/models/${encodeURIComponent(modelName)}${version === undefined ? '' : `/versions/${encodeURIComponent(version)}`}`;
    const meta = await request('GET', route);
    if (meta.status !== 200) {
      const message = json(meta.bytes).error;
      throw environmentError(
        `the server at ${shown} does not serve model '${modelName}' (HTTP ${meta.status}${message ? `: ${shownValue(message)}` : ''})`,
        'set model.name in config to the name the server uses',
      );
    }
    const described = json(meta.bytes) as { inputs?: ServerTensor[]; outputs?: ServerTensor[] };
    const inputs = signature(described.inputs, 'input');
    const outputs = signature(described.outputs, 'output');
    const path = `${route}/infer`;
    return {
      modelName,
      inputs,
      outputs,
      protocol,
      async predict(feeds) {
        const encoded = encodeRestRequest(inputs, feeds, { binary: protocol === 'rest-binary' });
        const res = await request('POST', path, encoded.body, encoded.headers);
        if (res.status !== 200) {
          const message = `the server answered HTTP ${res.status} to an inference request: ${shownValue(json(res.bytes).error ?? 'no error message')}`;
          // 500 is the server's word that the run failed: the model's failure, as it would be in-process.
          throw res.status === 500 ? new ModelRunError(message) : environmentError(message);
        }
        const header = res.headers[HEADER_LENGTH];
        const decoded = decodeRestResponse(res.bytes, header === undefined ? undefined : Number(header));
        const out: Outputs = {};
        for (const [name, t] of Object.entries(decoded)) out[name] = { data: asNumbers(t.datatype, t.data), dims: t.dims };
        return out;
      },
      close: () => pool.close(),
    };
  } catch (error) {
    await pool.close();
    throw error;
  }
}

/** The one model of a single-model server, from Triton's repository index (which mlops serve offers too). */
async function discoverModel(
  request: (method: 'GET' | 'POST', path: string) => Promise<{ status: number; bytes: Buffer }>,
  json: (bytes: Buffer) => Record<string, unknown>,
  shown: string,
): Promise<string> {
  const index = await request('POST', '/v2/repository/index');
  const models = index.status === 200 ? (JSON.parse(index.bytes.toString('utf8') || '[]') as { name?: string }[]) : [];
  const names = [...new Set(models.map((m) => m.name).filter((n): n is string => typeof n === 'string'))];
  if (names.length === 1) return names[0];
  throw environmentError(
    names.length === 0
      ? `the server at ${shown} does not list its models (POST /v2/repository/index answered HTTP ${index.status}${index.status !== 200 ? '' : ' with none'})`
      : `the server at ${shown} serves ${names.length} models (${names.join(', ')}); name the one to use`,
    'pass --model-name <name>, or set model.name in config',
    json(index.bytes).error ? String(json(index.bytes).error) : undefined,
  );
}

async function grpcPredictor(
  address: string,
  configuredName: string | undefined,
  secure: boolean,
  security: ClientSecurity | undefined,
  version?: string,
): Promise<Predictor> {
  const client = inferenceClient(address, grpcChannelCredentials(secure, security));
  const metadata = grpcMetadata(security);
  try {
    // An empty name asks mlops serve for its one model; other servers need the name configured.
    const meta = await call(
      client,
      client.ModelMetadata,
      { name: configuredName ?? '', ...(version === undefined ? {} : { version }) },
      30_000,
      metadata,
    ).catch((error: Error & { code?: number }) => {
      if (error.code === 16 || error.code === 8) throw refusedToken(address, grpcErrorMessage(error), security);
      throw environmentError(
        error.code === 5
          ? `the gRPC server at ${address} does not serve model '${configuredName ?? ''}': ${grpcErrorMessage(error)}`
          : `cannot reach the gRPC server at ${address}: ${grpcErrorMessage(error)}`,
        error.code === 5 ? 'set model.name in config to the name the server uses' : 'check the address and that the server listens for gRPC',
      );
    });
    const modelName = meta.name;
    const inputs = signature(meta.inputs, 'input');
    const outputs = signature(meta.outputs, 'output');
    return {
      modelName,
      inputs,
      outputs,
      protocol: 'grpc',
      async predict(feeds) {
        const response = await call(
          client,
          client.ModelInfer,
          { ...encodeGrpcRequest(modelName, inputs, feeds), ...(version === undefined ? {} : { model_version: version }) },
          30_000,
          metadata,
        ).catch((error: Error & { code?: number }) => {
          const message = `the gRPC server answered an inference request with ${grpcErrorMessage(error)}`;
          throw error.code === 13 ? new ModelRunError(message) : environmentError(message);
        });
        const out: Outputs = {};
        for (const [name, t] of Object.entries(decodeGrpcResponse(response))) out[name] = { data: asNumbers(t.datatype, t.data), dims: t.dims };
        return out;
      },
      close: async () => client.close(),
    };
  } catch (error) {
    client.close();
    throw error;
  }
}

/** The server wants a token it did not get (or refused the one sent): exit 3 with how to send one; the token itself is never shown. */
function refusedToken(shown: string, answer: string, security: ClientSecurity | undefined) {
  return environmentError(
    security?.token ? `the server at ${shown} refused the bearer token given (${answer})` : `the server at ${shown} asks for a bearer token (${answer})`,
    security?.token
      ? 'check that the token is one the server accepts (server.auth.tokenFile)'
      : 'set MLOPS_TOKEN or pass --token-file with a token the server accepts',
  );
}
