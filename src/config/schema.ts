/**
 * The config, written once: every field's type, its checks and their messages, its default and its
 * description. The types (config/defaults.ts) are read off it; the defaults as data (config/default-values.ts),
 * mlops.config.example.json and the reference in docs/configuration.md are written from it (config/generate.ts,
 * `npm run config-files`).
 */
import { z } from 'zod';

/** ">= 0.95", "<=20", "> 0", "== 1": a gate threshold. */
export const COMPARISON = /^\s*(>=|<=|==|>|<)\s*(-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$/;

const comparison = z.string({ error: 'expected a comparison like ">= 0.9"' }).regex(COMPARISON, {
  error: 'expected a comparison like ">= 0.9"',
});
const gates = z.record(z.string(), comparison, { error: 'expected an object of metric: comparison' });
const maxDrop = z.record(
  z.string(),
  z.number({ error: 'expected a number (the largest allowed drop)' }).min(0, {
    error: 'expected a number >= 0',
  }),
  { error: 'expected an object of metric: number' },
);
const int = (min: number, max: number, what = 'an integer') =>
  z
    .number({ error: `expected ${what} from ${min} to ${max}` })
    .int({ error: `expected ${what} from ${min} to ${max}` })
    .min(min, { error: `expected ${what} from ${min} to ${max}` })
    .max(max, { error: `expected ${what} from ${min} to ${max}` });
const text = (what: string) => z.string({ error: `expected ${what}` });
const bool = () => z.boolean({ error: 'expected true or false' });
const seconds = () => z.number({ error: 'expected seconds' }).positive({ error: 'expected seconds above 0' });
/**
 * A field the config must give. Missing, it reads "required, and missing" (describeIssues) rather than its
 * type's own message: the check for absence (nonoptional) runs only when what it wraps lets absence through.
 */
const required = <T extends z.ZodType>(schema: T) => schema.optional().nonoptional();
const trafficSteps = z
  .array(int(1, 100, 'a percentage'), { error: 'expected traffic steps like [10, 50, 100]' })
  .min(1, { error: 'expected at least one step' })
  .refine((steps) => steps.at(-1) === 100 && steps.every((p, i) => i === 0 || p > steps[i - 1]), {
    error: 'expected rising steps ending at 100, like [10, 50, 100]',
  });
const cpuAndMemory = (cpu: string, memory: string) =>
  z
    .object({ cpu: z.string().default(cpu), memory: z.string().default(memory) })
    .strict()
    .prefault({});
const resources = z
  .object({ requests: cpuAndMemory('250m', '256Mi'), limits: cpuAndMemory('1', '512Mi') })
  .strict()
  .prefault({});
const secretName = text('a Secret name').regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, { error: 'expected a Secret name (lowercase letters, digits, "-", ".")' });
/** Who a target's pods run as, and how they pull from a private registry. */
const serviceAccountName = text('a ServiceAccount name').regex(/^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$/, {
  error: 'expected a ServiceAccount name (lowercase letters, digits, "-", ".")',
});
const imagePullSecrets = z.array(secretName, { error: 'expected a list of Secret names' });
/** A token Secret and a TLS Secret mounted into a target's pods (Kubernetes, KServe). */
const authSecret = z.object({ secretName }).strict();
const tlsSecret = z.object({ secretName, clientCa: bool() }).partial().required({ secretName: true }).strict();
const awsRegion = text('an AWS region like eu-west-1').regex(/^[a-z]{2}(-[a-z]+)+-\d$/, { error: 'expected an AWS region like eu-west-1' });
const iamRole = (example: string) =>
  text('an IAM role ARN').regex(/^arn:aws[a-z-]*:iam::\d{12}:role\/.+$/, { error: `expected an IAM role ARN like arn:aws:iam::123456789012:role/${example}` });
/** Where an Azure target lives. */
const azure = {
  subscriptionId: text('a subscription id').regex(/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/, {
    error: 'expected a subscription id (a GUID)',
  }),
  resourceGroup: text('a resource group name').regex(/^[-\w._()]{1,89}[-\w_()]$/, { error: 'expected a resource group name' }),
  location: text('an Azure region like westeurope').regex(/^[a-z0-9]+$/, { error: 'expected an Azure region like westeurope' }),
  armEndpoint: text('an https URL')
    .url({ error: 'expected an https URL like https://management.azure.com' })
    .startsWith('https://', { error: 'expected an https URL like https://management.azure.com' })
    .default('https://management.azure.com'),
};
const kubeName = (what: string) => text(what).regex(/^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$/, { error: 'expected a DNS label (lowercase letters, digits, "-")' });
const readyTimeout = (defaultSeconds: number, seconds = int(1, 86_400, 'seconds')) =>
  seconds.default(defaultSeconds).describe('How long the deploy waits for the new version to become ready before it fails.');

const size = z.object({ height: int(1, 65536, 'pixels'), width: int(1, 65536, 'pixels') }).strict();
const positive = (what: string) => z.number({ error: `expected ${what}` }).positive({ error: `expected ${what} above 0` });
/** model.preprocess: how raw images and texts become the model's tensors; each field wins over the export folder's files. */
const preprocess = z
  .object({
    image: z
      .object({
        input: text('a model input name'),
        convertRgb: bool(),
        resize: z.union(
          [
            size,
            z
              .object({
                shortestEdge: int(1, 65536, 'pixels'),
                longestEdge: int(1, 65536, 'pixels').optional(),
                cropPct: positive('a share like 0.875').max(1, { error: 'expected a share up to 1' }).optional(),
              })
              .strict(),
            z.object({ longestEdge: int(1, 65536, 'pixels') }).strict(),
            z.null(),
          ],
          { error: 'expected {"height", "width"}, {"shortestEdge"[, "longestEdge", "cropPct"]}, {"longestEdge"} or null (no resize)' },
        ),
        resample: z.enum(['nearest', 'bilinear', 'bicubic', 'lanczos', 'box', 'hamming'], {
          error: 'expected nearest, bilinear, bicubic, lanczos, box or hamming',
        }),
        centerCrop: z.union([size, z.null()], { error: 'expected {"height", "width"} or null' }),
        rescaleFactor: z.union([positive('a factor like 0.00392156862745098'), z.null()]),
        normalize: z.union([z.object({ mean: z.array(z.number()).min(1), std: z.array(positive('a standard deviation')).min(1) }).strict(), z.null()], {
          error: 'expected {"mean": [...], "std": [...]} or null',
        }),
        alpha: z.enum(['white', 'black', 'refuse'], { error: 'expected "white", "black" or "refuse"' }),
        maxBytes: int(1, 2 ** 31 - 1, 'a size in bytes'),
        maxPixels: int(1, 2 ** 40, 'a pixel count'),
        formats: z
          .array(z.enum(['jpeg', 'png', 'webp', 'gif', 'tiff', 'avif'], { error: 'expected jpeg, png, webp, gif, tiff or avif' }))
          .min(1, { error: 'expected at least one format' }),
      })
      .partial()
      .strict(),
    text: z
      .object({
        maxLength: int(1, 1_000_000, 'a token count'),
        truncation: z.enum(['truncate', 'refuse'], { error: 'expected "truncate" or "refuse"' }),
        maxBytes: int(1, 2 ** 31 - 1, 'a size in bytes'),
      })
      .partial()
      .strict(),
  })
  .partial()
  .strict();
/** model.postprocess: a classifier's scores to labels; each field wins over config.json's id2label and problem_type. */
const postprocess = z
  .object({
    function: z.enum(['auto', 'softmax', 'sigmoid', 'none'], { error: 'expected "auto", "softmax", "sigmoid" or "none"' }),
    topK: int(1, 1_000_000, 'a count of labels'),
    labels: z.array(text('a label name'), { error: "expected a list of class names in the output's order" }),
    output: text('a model output name'),
  })
  .partial()
  .strict();

export type PreprocessConfig = z.infer<typeof preprocess>;
export type PostprocessConfig = z.infer<typeof postprocess>;

/** The one model (config `model`); the models of several reuse its fields' checks. */
export const modelSection = z
  .object({
    path: text('a path to an .onnx file').min(1, { error: 'expected a path to an .onnx file' }).default('model.onnx').describe('The ONNX model file.'),
    name: text('a model name')
      .regex(/^(?:[a-z0-9][a-z0-9._-]*)?$/, {
        error: 'expected lowercase letters, digits, ".", "_" or "-", starting with a letter or digit',
      })
      .default('')
      .describe("Name in URLs (/v2/models/{name}) and image names. Empty: the file name, or its folder's name when the file is model.onnx."),
    version: text('a version string')
      .min(1, { error: 'expected a non-empty version string' })
      .default('1')
      .describe(
        'Version the server reports (metadata, model_version in answers and the inference log) for an untagged ' +
          'build; `mlops tag <version>` makes the tagged image report its release version instead.',
      ),
    shapes: z
      .record(z.string(), z.array(int(1, 2 ** 31 - 1, 'a dimension size'), { error: 'expected a list of dimension sizes like [1, 512]' }), {
        error: 'expected an object of input name to shape, like {"input": [1, 512]}',
      })
      .default({})
      .describe(
        'Input name -> its full shape, for the requests mlops makes up when no holdout is given (`mlops bench`, ' +
          "every deploy's smoke test; --shape NAME:D1,D2 on bench). Needed for every dynamic dimension but the " +
          'batch, which is never guessed: a missing one stops the command, naming the input and dimension. A batch dimension in it takes ' +
          'the rows asked for (--batch). Example: {"input": [1, 512], "h": [2, 1, 64]}.',
      ),
    inputData: text('"random", "zero" or the path of a JSON file in perf_analyzer\'s input format')
      .min(1, { error: 'expected "random", "zero" or a file path' })
      .default('random')
      .describe(
        'What those requests hold, as Triton\'s perf_analyzer takes it (--input-data on bench): "random" (floats in [-1, 1), integers ' +
          '0-9), "zero", or a JSON file {"data": [{"NAME": [values...] or {"content": [...], "shape": [...]} or {"b64": "..."}}, ...]}, ' +
          "one object a request, used in turn. Inputs a request leaves out are random. Relative to this file's folder.",
      ),
    preprocess: preprocess
      .default({})
      .describe(
        "How raw inputs become the model's tensors, when `path` names the folder a Hugging Face export writes (model.onnx beside " +
          'preprocessor_config.json, tokenizer.json, config.json): those files are the spec, and each field here wins over them. Empty: ' +
          'what the folder says. "image": {"input": the model input to fill (default pixel_values, or the one rank-4 input), ' +
          '"convertRgb", "resize": {"height", "width"} | {"shortestEdge", "longestEdge", "cropPct"} | {"longestEdge"} | null, ' +
          '"resample": nearest|bilinear|bicubic|lanczos|box|hamming, "centerCrop": {"height", "width"} | null, "rescaleFactor", ' +
          '"normalize": {"mean", "std"} | null, "alpha": white|black|refuse (default white), "maxBytes" (default 16 MiB, the server\'s ' +
          'body limit), "maxPixels" (default 50,000,000, checked before decoding), "formats" (default jpeg, png, webp, gif, tiff, ' +
          'avif)}. "text": {"maxLength" (default the smallest of tokenizer_config.json\'s model_max_length, config.json\'s ' +
          'max_position_embeddings and the input\'s fixed length), "truncation": truncate|refuse, "maxBytes" (default 64 KiB)}. Example: ' +
          '{"image": {"resize": {"shortestEdge": 256}, "centerCrop": {"height": 224, "width": 224}}}.',
      ),
    postprocess: postprocess
      .default({})
      .describe(
        'How outputs become labels, answered beside the raw outputs (OIP v2: `label` and `score` outputs; v1 :predict: [{"label", ' +
          '"score"}] per instance). Empty: from config.json (id2label; problem_type multi_label_classification means sigmoid, else ' +
          'softmax). Fields: "function": auto|softmax|sigmoid|none, "topK" (default 1; a request\'s top_k parameter asks for more), ' +
          '"labels": class names in the output\'s order, "output": the output read (default logits, or the first float output).',
      ),
  })
  .strict();

const serverSection = z
  .object({
    host: text('a host name or address').default('127.0.0.1').describe('Address `mlops serve` binds. Images always bind 0.0.0.0 inside the container.'),
    port: int(0, 65535, 'a port').default(8080).describe('Port to listen on; 0 picks a free one.'),
    grpcPort: int(0, 65535, 'a port (0 turns gRPC off)')
      .default(8081)
      .describe('Port for the Open Inference Protocol over gRPC (and grpc.health.v1); 0 turns gRPC off.'),
    maxBodyBytes: int(1024, 2 ** 31 - 1, 'a size in bytes')
      .default(16 * 1024 * 1024)
      .describe('Largest request body (and gRPC message); larger requests get 413 (RESOURCE_EXHAUSTED over gRPC).'),
    allowNonFinite: bool()
      .default(false)
      .describe(
        'NaN and infinities in floating-point inputs are refused with 400 (INVALID_ARGUMENT) on every path: JSON, binary ' +
          'tensors, gRPC. true lets them through, for models that read NaN as "missing" (env MLOPS_ALLOW_NON_FINITE).',
      ),
    inferenceTimeoutMs: int(1, 3_600_000, 'milliseconds')
      .default(60_000)
      .describe(
        "A request not answered within this gets 504 (DEADLINE_EXCEEDED over gRPC, where a client's shorter " +
          'deadline wins). A run that overstays in a worker thread is abandoned: the worker is terminated and ' +
          'replaced, and mlops_inference_abandoned_runs counts it (env MLOPS_INFERENCE_TIMEOUT_MS).',
      ),
    maxPendingBodyBytes: int(1024, 2 ** 40, 'a size in bytes')
      .default(128 * 1024 * 1024)
      .describe(
        'Bytes that all request bodies still arriving may hold together; past it a new body gets 503 with Retry-After, so memory ' +
          'follows what arrived, never what clients declare. At least maxBodyBytes (env MLOPS_MAX_PENDING_BODY_BYTES).',
      ),
    // Two: on the 2-core machines measured, two workers with one ONNX Runtime thread each served the image fixture
    // 1.8x faster under load than one worker with two threads, for about 40 MiB more (docs/benchmarks.md).
    workers: int(0, 64, 'a thread count (0: inference on the main thread)')
      .default(2)
      .describe(
        'Inference worker threads, each with its own ONNX Runtime session and so its own copy of the weights: set 1 for a ' +
          'model of several GB. 0 runs inference on the main thread, where a long run stalls health checks.',
      ),
    inlineMaxMs: z
      .number({ error: 'expected milliseconds' })
      .min(0, { error: 'expected milliseconds >= 0' })
      .max(1000, { error: 'expected milliseconds <= 1000' })
      .default(1)
      .describe(
        'A model that runs a full batch of random inputs faster than this at start runs small batches on the main thread, ' +
          'saving the hop to a worker. It moves to the workers for good after one run over 25 times this (at least 25 ms), ' +
          'or three of the last 100 runs over 4 times this (at least 2 ms). 0: always the workers.',
      ),
    offloadBytes: int(0, 2 ** 31 - 1, 'a size in bytes')
      .default(64 * 1024)
      .describe('Request bodies larger than this are decoded, run and encoded whole in a worker thread, so large JSON never stalls the main thread.'),
    shutdownTimeoutMs: int(0, 600_000, 'milliseconds')
      .default(10_000)
      .describe('On SIGTERM/SIGINT, how long requests in flight may take before connections are closed.'),
    memoryBudget: text('a size like "2Gi"')
      .regex(/^(\s*\d+(\.\d+)?\s*([KMGT]i|[KMGT]B?|B)?\s*)?$/, {
        error: 'expected a size like "512Mi", "2Gi" or "1G" (empty: no budget)',
      })
      .default('')
      .describe(
        'The most memory the server may take for its models and requests together, like "2Gi": at start, weights x (workers + the ' +
          "main thread's session) over it refuses the start with exit 2; while serving, what the sessions leave holds the bodies " +
          'still arriving and every request in hand (about 4x its body: the body, decoded tensors, outputs, the answer), and a ' +
          'request that would not fit gets 503 with Retry-After (413 if it never could). Empty: no check.',
      ),
    minBodyRate: int(0, 2 ** 31 - 1, 'bytes a second (0: no minimum)')
      .default(1024)
      .describe(
        'Bytes a second a request body (or gRPC message) still arriving must average over 10 s; a slower ' +
          'one is dropped (408; gRPC CANCELLED) so it stops holding its share of maxPendingBodyBytes, as ' +
          "nginx's client_body_timeout does. 0: no minimum (env MLOPS_MIN_BODY_RATE).",
      ),
    responseCache: z
      .object({
        maxBytes: int(0, 2 ** 40, 'a size in bytes (0: no cache)')
          .default(0)
          .describe('Bytes of outputs kept, least recently used out first; 0 turns the cache off (env MLOPS_RESPONSE_CACHE_BYTES).'),
      })
      .strict()
      .prefault({})
      .describe(
        "Opt-in, as Triton's: a model's outputs for inputs it has already answered, answered again without a run. The key " +
          'is the model, its version, the decoded inputs and the outputs asked for; only successful runs are kept, never ' +
          'errors or explanations; Cache-Control: no-cache (or no-store, or the same gRPC metadata) skips it; shadows and the ' +
          'inference log still see every request; hits and misses are in mlops_response_cache_lookups_total. Requests over ' +
          'offloadBytes (decoded in a worker) and images or texts sent raw are not cached.',
      ),
    trustedProxies: z
      .array(
        text('an IP address or CIDR range like "fd00::/8"').regex(/^[0-9A-Fa-f:.]+(\/\d{1,3})?$/, {
          error: 'expected an IP address or CIDR range like "127.0.0.1" or "fd00::/8"',
        }),
        { error: 'expected a list of addresses, like ["127.0.0.1"]' },
      )
      .default([])
      .describe(
        'Addresses or CIDR ranges of proxies (an ingress, a load balancer, a sidecar) whose X-Forwarded-For (or ' +
          'Forwarded, or server.auth.clientAddressHeader) names the client: read from the right, skipping trusted hops. ' +
          'From anyone else the header is ignored, as a client could forge it. Used for the lock-out and for each ' +
          "client's share of maxPendingBodyBytes (env MLOPS_TRUSTED_PROXIES, comma-separated).",
      ),
    repositoryControl: bool()
      .default(false)
      .describe(
        "Allow POST /v2/repository/models/{name}/load (loads the model's versions from their files again, swapping in new " +
          'sessions without a failed request) and /unload (the model answers 503 until loaded). Off: both answer 403. Anyone who ' +
          'may infer may then also unload: keep it off where clients are not trusted, or turn on server.auth.',
      ),
    intraOpThreads: int(0, 1024, 'a thread count')
      .default(0)
      .describe(
        'ONNX Runtime threads per session; 0 shares the cores out between the workers (cores / workers ' +
          "each, at least 1), and lets ONNX Runtime choose for the main thread's session.",
      ),
    batching: z
      .object({
        enabled: bool()
          .default(true)
          .describe('Run requests that arrive together as one batch. Only for models whose inputs and outputs all have a dynamic first dimension.'),
        maxBatchSize: int(1, 65536, 'a batch size').default(32).describe('Most rows in one batched run.'),
        // No added wait: requests that arrive while a batch runs form the next one, so batching costs nothing at low load (docs/benchmarks.md).
        maxWaitMs: z
          .number({ error: 'expected milliseconds' })
          .min(0, { error: 'expected milliseconds >= 0' })
          .max(10_000, { error: 'expected milliseconds <= 10000' })
          .default(0)
          .describe('How long a request may wait for others to batch with. 0: no added wait; requests that queue while a run is busy form the next batch.'),
      })
      .strict()
      .prefault({}),
    inferenceLog: z
      .object({
        sample: z
          .number({ error: 'expected a share of requests from 0 to 1' })
          .min(0, { error: 'expected a share of requests from 0 to 1' })
          .max(1, { error: 'expected a share of requests from 0 to 1' })
          .default(0)
          .describe('Share of requests logged, from 0 to 1 (0.01: one in a hundred). 0 turns the log off.'),
        sink: text('"stdout", "file:/absolute/path.jsonl" or an http(s):// URL')
          .regex(/^(?:stdout|file:\/.+|https?:\/\/.+)$/, {
            error: 'expected "stdout", "file:/absolute/path.jsonl" or an http(s):// URL',
          })
          .default('stdout')
          .describe(
            'Where the lines go: "stdout" (read back with `docker logs` or `kubectl logs`), "file:/absolute/path.jsonl" ' +
              '(appended), or an http(s):// collector that receives CloudEvents in batches (application/cloudevents-batch+json). ' +
              'A slow or dead sink costs rows (counted in mlops_inference_log_dropped_total), never inference.',
          ),
        inputs: bool().default(false).describe("Log each row's inputs too. Off by default: inputs may hold personal data, and images make large lines."),
      })
      .strict()
      .prefault({})
      .describe(
        'A JSON line per row of a sample of requests: the request id, row, time, model name, version and sha256, the outputs (and the inputs ' +
          'when asked). `mlops monitor --labels` joins it with the truth when it arrives. `mlops build` writes these settings into the image; ' +
          'MLOPS_INFERENCE_LOG_SAMPLE, MLOPS_INFERENCE_LOG_SINK and MLOPS_INFERENCE_LOG_INPUTS override them where it runs.',
      ),
    auth: z
      .object({
        tokenFile: text('a path to a file of tokens')
          .default('')
          .describe(
            'A file of tokens, one a line, or sha256:<hex> lines so the file never holds a token in clear; # starts a comment. ' +
              'Re-read when it changes, so tokens rotate without a restart (env MLOPS_AUTH_TOKEN_FILE; --auth-token-file).',
          ),
        metrics: bool().default(false).describe('true: /metrics asks for a token too (env MLOPS_AUTH_METRICS).'),
        clientAddressHeader: text('a header name like "x-forwarded-for"')
          .regex(/^([A-Za-z0-9-]+)?$/, {
            error: 'expected a header name like "x-forwarded-for"',
          })
          .default('')
          .describe(
            "The header a proxy listed in server.trustedProxies sets to the client's address. Empty: X-Forwarded-For, else Forwarded. " +
              "Without server.trustedProxies no header is read: the socket's address counts (env MLOPS_AUTH_CLIENT_ADDRESS_HEADER).",
          ),
        reloadIntervalMs: int(100, 3_600_000, 'milliseconds').default(5000).describe('How often the token file is looked at for a change.'),
      })
      .strict()
      .prefault({})
      .describe(
        'Bearer tokens (docs/security.md). On when the token file (or MLOPS_AUTH_TOKENS, comma-separated, environment only) ' +
          'gives any: every route but the health and readiness probes (/v2/health/*, /v2/models/{name}/ready, /ping, ' +
          'grpc.health.v1, ServerLive, ServerReady, ModelReady) asks for Authorization: Bearer <token> (gRPC: authorization ' +
          'metadata) and answers 401 / UNAUTHENTICATED otherwise. An address (or a wrong token) that keeps failing is slowed, ' +
          'then its failing requests are refused with 429 for a minute; a valid token is never refused for what others did ' +
          "from the same address. Deploys mount the file from the target's auth settings.",
      ),
    tls: z
      .object({
        cert: text('a path to a PEM certificate').default('').describe('PEM certificate (chain) (env MLOPS_TLS_CERT; --tls-cert).'),
        key: text('a path to a PEM private key').default('').describe('Its PEM private key (env MLOPS_TLS_KEY; --tls-key).'),
        clientCa: text('a path to a PEM CA bundle')
          .default('')
          .describe('PEM CA bundle: client certificates issued by it are required (mutual TLS) (env MLOPS_TLS_CLIENT_CA; --tls-client-ca).'),
        reloadIntervalMs: int(100, 3_600_000, 'milliseconds').default(5000).describe('How often the files are looked at for a change.'),
      })
      .strict()
      .prefault({})
      .describe(
        'HTTPS and gRPC over TLS on the same ports (TLS 1.2 at least). The files are checked at start (readable, the key matches ' +
          'the certificate, not expired: exit 2 otherwise) and re-read when they change, as cert-manager rotates them.',
      ),
  })
  .strict();

const imageSection = z
  .object({
    repository: text('an image repository')
      .regex(/^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?\/)*[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$|^$/, {
        error: 'expected an image repository like "registry.example.com/team/model" (lowercase, no tag)',
      })
      .default('')
      .describe('Image repository for `mlops build` tags. Empty: the model name. Include the registry host (registry.example.com/team/model) to push there.'),
    base: text('an image reference')
      .min(1, { error: 'expected an image reference like "node:20-slim"' })
      .default('node:20-slim')
      .describe('Base image; it must have node (20 or newer, glibc) on its PATH. `mlops build --base` overrides it.'),
    platform: z
      .string({ error: 'expected "linux/amd64", "linux/arm64" or both, comma-separated' })
      .regex(/^linux\/(?:amd64|arm64)(?:,linux\/(?:amd64|arm64))?$/, {
        error: 'expected "linux/amd64", "linux/arm64" or both, comma-separated ("linux/amd64,linux/arm64")',
      })
      .default('linux/amd64')
      .describe(
        'Target platform: linux/amd64 or linux/arm64, or both comma-separated (linux/amd64,linux/arm64: ' +
          'one image index, a layer set per platform, no emulation; the daemonless builder only). Only the ' +
          'ONNX Runtime binaries for each go into its image. `--platform` overrides it.',
      ),
    builder: z
      .enum(['auto', 'docker', 'oci'], { error: 'expected "auto", "docker" or "oci"' })
      .default('auto')
      .describe(
        "How `mlops build` makes the image: docker (the engine's builder), oci (in-process, no daemon: layers written " +
          'and pushed by mlops, byte-reproducible) or auto (docker when an engine answers and the build needs nothing ' +
          'only oci does: --output, --check, several platforms; else oci). `--builder` overrides it.',
      ),
    port: int(1, 65535, 'a port').default(8080).describe('Port the server listens on inside the container (EXPOSE and PORT).'),
    grpcPort: int(0, 65535, 'a port (0: no gRPC)').default(8081).describe('gRPC port inside the container (EXPOSE and GRPC_PORT); 0: no gRPC.'),
  })
  .strict();

const testSection = z
  .object({
    holdout: text('a path to a holdout file')
      .default('')
      .describe('The holdout `mlops test` scores: .csv with a header, .jsonl, or .npy (with --labels). --holdout overrides it.'),
    labelsFile: text('a path to an .npy file of labels')
      .default('')
      .describe(
        'With an .npy test.holdout: the .npy of its labels, one a row (what --labels gives ' +
          "on the command line, which wins). Relative to this file's folder.",
      ),
    task: z
      .enum(['', 'classification', 'regression'], { error: 'expected "classification" or "regression"' })
      .default('')
      .describe('classification or regression. Empty: detected from the output (a column per class means classification; one column means regression).'),
    label: text('a column or key name')
      .min(1, { error: 'expected a column or key name' })
      .default('label')
      .describe('The CSV column, or JSONL key, holding the expected label or value.'),
    features: z
      .union([z.array(z.string()), z.record(z.string(), z.array(z.string()))], {
        error: 'expected a list of column names, or {"input name": [column names]}',
      })
      .default([])
      .describe(
        'CSV columns for the model\'s inputs: a list (single-input models) or {"input name": [columns]}. Empty: ' +
          "every column but the label, in file order, split across the inputs in the model's order.",
      ),
    labels: z
      .array(z.string({ error: 'expected class labels as strings' }), { error: 'expected a list of class labels' })
      .default([])
      .describe('Class index -> label as written in the holdout, e.g. ["malignant", "benign"]. Empty: labels are class indices 0..n-1.'),
    output: text('an output name')
      .default('')
      .describe('The output that is scored. Empty: the first float output with a column per class (probabilities or logits), else the first output.'),
    outputKind: z
      .enum(['auto', 'probabilities', 'logits'], { error: 'expected "auto", "probabilities" or "logits"' })
      .default('auto')
      .describe(
        'auto, probabilities or logits. auto: probabilities when every row is in [0, 1] and ' +
          'sums to 1, else logits (softmax is applied for log_loss and roc_auc).',
      ),
    threshold: z
      .number({ error: 'expected a number from 0 to 1' })
      .min(0, { error: 'expected a number from 0 to 1' })
      .max(1, {
        error: 'expected a number from 0 to 1',
      })
      .default(0.5)
      .describe('For a single sigmoid output column: the positive class when p >= threshold.'),
    batchSize: int(1, 65536, 'a row count').default(256).describe('Rows per inference request (a model with a fixed batch size uses its own).'),
    gates: gates.default({}).describe("Quality gates: metric name -> comparison (>=, <=, >, <, ==). Also --gate 'accuracy>=0.95'."),
    maxDrop: maxDrop.default({}).describe('With --baseline <report.json>: metric name -> the most it may be worse than the baseline.'),
    parity: z
      .object({
        sample: int(0, 1_000_000, 'a row count')
          .default(256)
          .describe('Rows also run in-process in image mode, to check the packaged server answers like ONNX Runtime. 0 turns the check off.'),
        tolerance: z
          .number({ error: 'expected a number >= 0' })
          .min(0, { error: 'expected a number >= 0' })
          .default(1e-4)
          .describe("The largest absolute difference allowed between the server's and in-process outputs."),
      })
      .strict()
      .prefault({}),
  })
  .strict();

const localTarget = z
  .object({
    type: z.literal('local'),
    host: text('a host address').default('127.0.0.1').describe("Host address the container's port is published on."),
    port: int(1, 65535, 'a port').default(8080).describe("Host port the container's REST port is published on."),
    grpcPort: int(0, 65535, 'a port (0: gRPC not published)').default(8081).describe("Host port the container's gRPC port is published on; 0: not published."),
    containerName: text('a container name').default('').describe('Empty: mlops-<model>-<target>.'),
    restart: z
      .enum(['no', 'on-failure', 'unless-stopped', 'always'], { error: 'expected no, on-failure, unless-stopped or always' })
      .default('unless-stopped')
      .describe('Docker restart policy: no, on-failure, unless-stopped or always.'),
    memory: text('a size like "512m"')
      .regex(/^(\d+[bkmg]?)?$/i, { error: 'expected a size like "512m" or "2g"' })
      .default('')
      .describe('Memory limit like 512m; empty: none.'),
    cpus: z.number({ error: 'expected a number of CPUs' }).min(0, { error: 'expected a number of CPUs >= 0' }).default(0).describe('CPU limit; 0: none.'),
    readyTimeoutSeconds: seconds().default(30).describe('How long the new version may take to answer ready before it is rolled back.'),
    auth: z
      .object({ tokenFile: text('a path to a token file').min(1, { error: 'expected a path to a token file' }) })
      .strict()
      .optional()
      .describe(
        'Optional. {"tokenFile": "tokens"}: a token file on this machine (relative to this file), bind-mounted read-only; the server ' +
          "asks every client for one of its tokens, and the smoke test sends the first. It must be readable by the server's uid 10001. " +
          'Rotate by writing the file in place (a file replaced by a rename is not seen through the mount).',
      ),
    tls: z
      .object({
        cert: text('a path to a PEM certificate').min(1),
        key: text('a path to a PEM private key').min(1),
        clientCa: text('a path to a PEM CA bundle'),
        clientCert: text("a path to the smoke test's client certificate"),
        clientKey: text("a path to the smoke test's client key"),
      })
      .partial()
      .required({ cert: true, key: true })
      .strict()
      .refine((t) => !t.clientCa || (t.clientCert && t.clientKey), {
        error: 'with clientCa (mutual TLS), give clientCert and clientKey for the smoke test',
      })
      .optional()
      .describe(
        'Optional. {"cert", "key", "clientCa", "clientCert", "clientKey"}: certificate and key bind-mounted read-only (HTTPS and gRPC ' +
          "over TLS); clientCa turns on mutual TLS, and clientCert/clientKey are what mlops' own smoke test presents then.",
      ),
  })
  .strict();

const kubernetesTarget = z
  .object({
    type: z.literal('kubernetes'),
    context: text('a kubectl context').default('').describe('kubectl context; empty: the current one.'),
    namespace: text('a namespace')
      .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, { error: 'expected a DNS label (lowercase letters, digits, "-")' })
      .default('default')
      .describe('Namespace the Deployment, Service, HorizontalPodAutoscaler and PodDisruptionBudget go in.'),
    name: text('a name')
      .regex(/^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$/, { error: 'expected a DNS label (lowercase letters, digits, "-")' })
      .default('')
      .describe('Name of the Deployment, Service, HorizontalPodAutoscaler and PodDisruptionBudget; empty: the model name.'),
    port: int(1, 65535, 'a port').default(80).describe("The Service's port."),
    resources: resources.describe("The server container's CPU and memory requests and limits."),
    autoscaling: z
      .object({
        minReplicas: int(1, 1000, 'a replica count').default(2),
        maxReplicas: int(1, 1000, 'a replica count').default(10),
        cpuTargetPercent: int(1, 100, 'a percentage').default(70),
      })
      .strict()
      .prefault({})
      .describe('The HorizontalPodAutoscaler: replicas between minReplicas and maxReplicas, aiming at cpuTargetPercent of the CPU requested.'),
    minAvailable: int(0, 1000, 'a pod count').default(1).describe('PodDisruptionBudget: pods kept during voluntary disruptions.'),
    serviceType: z
      .enum(['ClusterIP', 'NodePort', 'LoadBalancer'], { error: 'expected ClusterIP, NodePort or LoadBalancer' })
      .default('ClusterIP')
      .describe("The Service's type: ClusterIP, NodePort or LoadBalancer."),
    rolloutTimeoutSeconds: int(1, 86_400, 'seconds').default(300).describe('kubectl rollout status --timeout; past it the deploy is undone.'),
    preStopSeconds: int(0, 300, 'seconds')
      .default(5)
      .describe('Seconds a pod waits before shutting down, so endpoints drop it first (added to the grace period with server.shutdownTimeoutMs).'),
    serviceAccountName: serviceAccountName
      .default('')
      .describe("The pods' ServiceAccount; empty: the namespace's default. Its API token is never mounted: the server needs none."),
    imagePullSecrets: imagePullSecrets
      .default([])
      .describe("Names of Secrets (kubectl create secret docker-registry ...) with the registry's credentials, for a private registry."),
    auth: authSecret
      .optional()
      .describe(
        'Optional. {"secretName": "bc-tokens"}: a Secret whose key `tokens` is the server\'s token file (kubectl create ' +
          'secret generic bc-tokens --from-file=tokens), mounted read-only; the smoke test sends MLOPS_TOKEN.',
      ),
    tls: tlsSecret
      .optional()
      .describe(
        'Optional. {"secretName": "bc-tls", "clientCa": false}: a kubernetes.io/tls Secret (cert-manager ' +
          'writes one), mounted read-only; the probes use HTTPS. clientCa true: its ca.crt turns on mutual ' +
          'TLS (the smoke test presents MLOPS_CLIENT_CERT and MLOPS_CLIENT_KEY).',
      ),
    networkPolicy: z
      .object({
        namespaces: z.array(kubeName('a namespace').min(1), { error: 'expected a list of namespaces' }),
        podLabels: z.record(z.string(), z.string(), { error: 'expected an object of label: value' }),
      })
      .partial()
      .strict()
      .optional()
      .describe(
        'Optional. {"namespaces": ["gateway"], "podLabels": {"role": "client"}}: a NetworkPolicy ' +
          "admitting to the model's ports only pods in those namespaces (and with those labels, when " +
          "both are given). The kubelet's probes come from the node and stay admitted.",
      ),
    batch: z
      .object({
        parallelism: int(1, 10_000, 'a pod count').default(4).describe('Pods the Indexed Job runs at once (each scores one shard).'),
        backoffLimitPerIndex: int(0, 100, 'a retry count')
          .default(2)
          .describe("Retries of each shard's pod before that index counts as failed; failed indexes get one retry Job of their own."),
        activeDeadlineSeconds: int(1, 2_592_000, 'seconds')
          .default(86_400)
          .describe('How long the Job may run (its activeDeadlineSeconds); past it Kubernetes ends it and the run fails.'),
        ttlSecondsAfterFinished: int(0, 2_592_000, 'seconds')
          .default(604_800)
          .describe('How long a finished Job (and its pods and their logs) is kept before Kubernetes deletes it.'),
        resources: z
          .object({
            requests: z
              .object({ cpu: text('CPUs, like "2"'), memory: text('a size like "2Gi"') })
              .partial()
              .strict(),
            limits: z
              .object({ cpu: text('CPUs, like "2"'), memory: text('a size like "2Gi"') })
              .partial()
              .strict(),
          })
          .partial()
          .strict()
          .optional()
          .describe("Optional. The batch pods' CPU and memory requests and limits, each one given over the target's resources (the rest are the target's)."),
      })
      .strict()
      .prefault({})
      .describe('`mlops batch --target`: an Indexed Job running the image in batch mode, one index per shard.'),
  })
  .strict();

const cloudRunTarget = z
  .object({
    type: z.literal('cloudrun'),
    project: required(text('a Google Cloud project id').min(1, { error: 'expected a Google Cloud project id' })).describe(
      'Google Cloud project id (required).',
    ),
    region: required(text('a region like europe-west1').min(1, { error: 'expected a region like europe-west1' })).describe('Cloud Run region (required).'),
    service: text('a service name').default('').describe('Empty: the model name.'),
    concurrency: int(1, 1000, 'a concurrency').default(80).describe('Requests one instance serves at a time (--concurrency).'),
    cpu: text('CPUs, like "1"').default('1').describe('CPUs per instance (--cpu).'),
    memory: text('a size like "512Mi"').default('512Mi').describe('Memory per instance (--memory).'),
    minInstances: int(0, 1000, 'an instance count').default(0).describe('Instances kept warm (--min-instances); 0 scales to zero when idle.'),
    maxInstances: int(1, 1000, 'an instance count').default(10).describe('Most instances Cloud Run scales out to (--max-instances).'),
    canary: trafficSteps.default([100]).describe('Traffic percentages the new revision is moved through, checked between steps; [100]: all at once.'),
    waitIntervalSeconds: int(0, 3600, 'seconds')
      .default(0)
      .describe(
        'How long each canary step bakes before the new revision is smoke-tested again; 0: at once. The platform has no health signal of its own to ' +
          'watch, so a bake is the time real traffic has to break the revision before the next step.',
      ),
    allowUnauthenticated: bool().default(false).describe("Public service; otherwise the smoke test sends gcloud's identity token."),
    readyTimeoutSeconds: readyTimeout(300, seconds()),
    auth: z
      .object({
        secret: text('a Secret Manager secret, "name:version"').regex(/^[A-Za-z0-9_-]+:(latest|\d+)$/, {
          error: 'expected a Secret Manager secret as "name:version", like "mlops-tokens:latest"',
        }),
      })
      .strict()
      .optional()
      .describe(
        'Optional. {"secret": "bc-tokens:latest"}: a Secret Manager secret holding the token file, mounted with --set-secrets; the smoke ' +
          "test sends MLOPS_TOKEN, and Cloud Run's own IAM token goes in X-Serverless-Authorization. TLS is Cloud Run's.",
      ),
  })
  .strict();

const kserveTarget = z
  .object({
    type: z.literal('kserve'),
    context: text('a kubectl context').default('').describe('kubectl context; empty: the current one. The cluster runs KServe (the InferenceService CRD).'),
    namespace: kubeName('a namespace').min(1, { error: 'expected a namespace' }).default('default').describe('Namespace the InferenceService goes in.'),
    name: kubeName('a name').default('').describe('InferenceService name; empty: the model name.'),
    deploymentMode: z
      .enum(['Knative', 'Standard'], { error: 'expected Knative or Standard' })
      .default('Knative')
      .describe('Knative (scale to zero, canary traffic) or Standard (a plain Deployment; canary must be [100]).'),
    resources: resources.describe("The predictor container's CPU and memory requests and limits."),
    minReplicas: int(0, 1000, 'a replica count')
      .default(1)
      .describe('0 lets Knative scale to zero (the smoke test then finds no pod: keep 1 or more while deploying).'),
    maxReplicas: int(1, 1000, 'a replica count').default(10).describe('Most replicas the predictor scales out to.'),
    canary: trafficSteps.default([100]).describe('canaryTrafficPercent steps for the new revision, each waited for and smoke-tested; [100]: all at once.'),
    waitIntervalSeconds: int(0, 3600, 'seconds')
      .default(0)
      .describe(
        'How long each canary step bakes before the new revision is smoke-tested again; 0: at once. The platform has no health signal of its own to ' +
          'watch, so a bake is the time real traffic has to break the revision before the next step.',
      ),
    readyTimeoutSeconds: readyTimeout(600),
    serviceAccountName: serviceAccountName
      .default('')
      .describe("As for kubernetes targets: the predictor's ServiceAccount (its token never mounted); empty: the default."),
    imagePullSecrets: imagePullSecrets.default([]).describe('As for kubernetes targets: Secrets for a private registry.'),
    auth: authSecret.optional().describe('Optional, as for kubernetes targets: {"secretName": ...} mounted into the predictor.'),
    tls: tlsSecret.optional().describe('Optional, as for kubernetes targets: {"secretName": ..., "clientCa": false}.'),
  })
  .strict()
  .refine((t) => t.canary.length === 1 || t.deploymentMode !== 'Standard', {
    error: 'KServe moves traffic in steps only in Knative mode; use [100] with deploymentMode Standard',
    path: ['canary'],
  });

const sageMakerTarget = z
  .object({
    type: z.literal('sagemaker'),
    region: required(awsRegion).describe(
      'AWS region (required). The image must be pushed to ECR: image.repository <account>.dkr.ecr.<region>.amazonaws.com/<name>.',
    ),
    executionRoleArn: required(iamRole('SageMakerExecution')).describe('IAM role SageMaker assumes to pull the image and write logs (required).'),
    endpoint: text('an endpoint name')
      .regex(/^([a-zA-Z0-9](-*[a-zA-Z0-9]){0,62})?$/, { error: 'expected letters, digits and "-", at most 63' })
      .default('')
      .describe('Endpoint name; empty: the model name.'),
    mode: z
      .enum(['realtime', 'serverless'], { error: 'expected realtime or serverless' })
      .default('realtime')
      .describe('realtime (instanceType x instanceCount) or serverless (memory and concurrency, scales to zero).'),
    instanceType: text('an instance type like ml.m5.large')
      .regex(/^ml\.[a-z0-9]+\.[a-z0-9]+$/, {
        error: 'expected an instance type like ml.m5.large',
      })
      .default('ml.m5.large')
      .describe('Instance type of a realtime endpoint.'),
    instanceCount: int(1, 1000, 'an instance count').default(1).describe('Instances of a realtime endpoint.'),
    serverless: z
      .object({
        memorySizeMb: z
          .union(
            [1024, 2048, 3072, 4096, 5120, 6144].map((m) => z.literal(m)),
            { error: 'expected 1024, 2048, 3072, 4096, 5120 or 6144' },
          )
          .default(2048),
        maxConcurrency: int(1, 200, 'a concurrency').default(10),
        provisionedConcurrency: int(0, 200, 'a concurrency').default(0),
      })
      .strict()
      .prefault({})
      .describe('memorySizeMb: 1024 to 6144 in steps of 1024; provisionedConcurrency 0: none.'),
    canary: trafficSteps
      .refine((steps) => steps.length <= 2 || steps.every((p, i) => p === Math.min(100, steps[0] * (i + 1))), {
        error: 'SageMaker shifts traffic all at once [100], in one canary step [p, 100], or in equal linear steps [p, 2p, ..., 100]',
      })
      .default([100])
      .describe('Blue/green traffic steps: [100] all at once, [p, 100] one canary step, [p, 2p, ..., 100] linear.'),
    waitIntervalSeconds: int(0, 3600, 'seconds').default(300).describe('How long SageMaker bakes each step, watching the alarms, before the next.'),
    alarms: z
      .array(text('a CloudWatch alarm name').min(1), { error: 'expected a list of CloudWatch alarm names' })
      .max(10, { error: 'SageMaker takes at most 10 alarms' })
      .default([])
      .describe('CloudWatch alarm names; if one fires during the update, SageMaker moves traffic back by itself.'),
    readyTimeoutSeconds: readyTimeout(1800),
    batch: z
      .object({
        instanceType: text('an instance type like ml.m5.large')
          .regex(/^ml\.[a-z0-9]+\.[a-z0-9]+$/, { error: 'expected an instance type like ml.m5.large' })
          .default('ml.m5.large')
          .describe("Instance type of a Batch Transform job's instances."),
        instanceCount: int(1, 100, 'an instance count').default(1).describe('Instances a Batch Transform job runs on; its input files are spread over them.'),
        maxPayloadMB: int(0, 100, 'megabytes')
          .default(6)
          .describe("Largest mini-batch of lines SageMaker sends in one request (MaxPayloadInMB); 0: what the image's GET /execution-parameters says."),
        maxConcurrentTransforms: int(0, 1000, 'a request count')
          .default(0)
          .describe("Requests SageMaker sends each instance at once (MaxConcurrentTransforms); 0: what the image's GET /execution-parameters says."),
        invocationsTimeoutSeconds: int(1, 3600, 'seconds')
          .default(600)
          .describe('How long one mini-batch request may take before SageMaker retries it (ModelClientConfig).'),
        timeoutSeconds: int(1, 2_592_000, 'seconds')
          .default(86_400)
          .describe('How long mlops waits for the job; past it the job is stopped and the run fails.'),
      })
      .strict()
      .prefault({})
      .describe('`mlops batch --target`: a Batch Transform job over the S3 input, lines in, one output line per input line.'),
  })
  .strict();

const vertexTarget = z
  .object({
    type: z.literal('vertex'),
    project: required(text('a Google Cloud project id').min(1, { error: 'expected a Google Cloud project id' })).describe(
      'Google Cloud project id (required).',
    ),
    region: required(text('a region like europe-west1').min(1, { error: 'expected a region like europe-west1' })).describe('Vertex AI region (required).'),
    endpoint: text('an endpoint display name').default('').describe('Endpoint display name (and id); empty: the model name.'),
    machineType: text('a machine type like n1-standard-2')
      .min(1, { error: 'expected a machine type like n1-standard-2' })
      .default('n1-standard-2')
      .describe('Machine type of each replica.'),
    minReplicas: int(1, 1000, 'a replica count').default(1).describe('Fewest replicas of the deployed model.'),
    maxReplicas: int(1, 1000, 'a replica count').default(3).describe('Most replicas Vertex AI scales out to.'),
    canary: trafficSteps
      .default([100])
      .describe('Traffic percentages for the new deployed model, each smoke-tested through `gcloud ai endpoints predict`; [100]: all at once.'),
    waitIntervalSeconds: int(0, 3600, 'seconds')
      .default(0)
      .describe(
        'How long each canary step bakes before the new model is smoke-tested again; 0: at once. The platform has no health signal of its own to ' +
          'watch, so a bake is the time real traffic has to break the model before the next step.',
      ),
    serviceAccount: text('a service account email').default('').describe("Service account the model runs as; empty: Vertex AI's default."),
    readyTimeoutSeconds: readyTimeout(1800),
    batch: z
      .object({
        machineType: text('a machine type like n1-standard-4')
          .min(1, { error: 'expected a machine type like n1-standard-4' })
          .default('n1-standard-4')
          .describe("Machine type of a batch prediction job's replicas."),
        startingReplicaCount: int(1, 1000, 'a replica count').default(1).describe('Replicas a batch prediction job starts with.'),
        maxReplicaCount: int(1, 1000, 'a replica count').default(4).describe('Most replicas Vertex AI scales a batch prediction job out to.'),
        timeoutSeconds: int(1, 2_592_000, 'seconds')
          .default(86_400)
          .describe('How long mlops waits for the job; past it the job is cancelled and the run fails.'),
      })
      .strict()
      .prefault({})
      .refine((b) => b.maxReplicaCount >= b.startingReplicaCount, { error: 'maxReplicaCount is below startingReplicaCount', path: ['maxReplicaCount'] })
      .describe('`mlops batch --target`: a BatchPredictionJob on the uploaded model, JSON Lines or CSV in, JSON Lines out.'),
  })
  .strict();

const lambdaTarget = z
  .object({
    type: z.literal('lambda'),
    region: required(awsRegion).describe(
      'AWS region (required). The image must be in ECR in the same region: image.repository <account>.dkr.ecr.<region>.amazonaws.com/<name>.',
    ),
    roleArn: required(iamRole('mlops-lambda')).describe('Execution role the function runs as (required): it needs ECR pull and CloudWatch Logs rights.'),
    function: text('a function name')
      .regex(/^([a-zA-Z0-9-_]{1,64})?$/, { error: 'expected letters, digits, "-" and "_", at most 64' })
      .default('')
      .describe('Function name; empty: the model name.'),
    alias: text('an alias name')
      .regex(/^(?!^[0-9]+$)[a-zA-Z0-9-_]{1,128}$/, {
        error: 'expected an alias name: letters, digits, "-" and "_", not only digits',
      })
      .default('live')
      .describe('The alias clients call (and the Function URL hangs on), moved to each release once its version passes the smoke invoke.'),
    architecture: z.enum(['x86_64', 'arm64'], { error: 'expected x86_64 or arm64' }).default('x86_64').describe("x86_64 or arm64: the image's architecture."),
    memorySizeMb: int(128, 10_240, 'megabytes').default(2048).describe('128 to 10240; Lambda gives CPU in proportion (1769 MB is one vCPU).'),
    ephemeralStorageMb: int(512, 10_240, 'megabytes').default(512).describe('/tmp size, 512 to 10240.'),
    timeoutSeconds: int(1, 900, 'seconds').default(30).describe('Longest invocation, 1 to 900.'),
    reservedConcurrency: int(0, 100_000, 'a concurrency')
      .optional()
      .describe('Concurrency reserved for the function (and its ceiling); leave out for none. Removed when left out again.'),
    provisionedConcurrency: int(0, 100_000, 'a concurrency')
      .default(0)
      .describe('Warm execution environments kept on the alias (no cold start for them); 0: none, and removes any.'),
    canary: trafficSteps.default([100]).describe('Weighted alias routing (AdditionalVersionWeights) for the new version, ending at 100; [100]: all at once.'),
    waitIntervalSeconds: int(0, 3600, 'seconds').default(300).describe('How long each step bakes before the alarms are read.'),
    alarms: z
      .array(text('a CloudWatch alarm name').min(1), { error: 'expected a list of CloudWatch alarm names' })
      .max(100, { error: 'at most 100 alarms' })
      .default([])
      .describe('CloudWatch alarm names; one in ALARM after a step moves the alias back to the serving version.'),
    functionUrl: z
      .enum(['AWS_IAM', 'NONE', 'off'], { error: 'expected AWS_IAM, NONE or off' })
      .default('AWS_IAM')
      .describe("The alias's Function URL: AWS_IAM (SigV4-signed requests), NONE (public; adds the invoke permission) or off (none, and removes one)."),
    readyTimeoutSeconds: readyTimeout(900),
  })
  .strict()
  .refine((t) => t.reservedConcurrency === undefined || t.provisionedConcurrency <= t.reservedConcurrency, {
    error: 'provisionedConcurrency cannot exceed reservedConcurrency',
    path: ['provisionedConcurrency'],
  });

const azureMLTarget = z
  .object({
    type: z.literal('azureml'),
    subscriptionId: required(azure.subscriptionId).describe(
      "Azure subscription id (required). Credentials: @azure/identity's default chain " +
        '(AZURE_CLIENT_ID/TENANT_ID/SECRET or a federated token in CI, managed identity, `az login`).',
    ),
    resourceGroup: required(azure.resourceGroup).describe("The workspace's resource group (required)."),
    location: required(azure.location).describe("The workspace's region (required), like westeurope."),
    armEndpoint: azure.armEndpoint.describe("Azure Resource Manager; a sovereign cloud's for Azure China or US Government."),
    workspace: required(text('an Azure ML workspace name').min(1, { error: 'expected an Azure ML workspace name' })).describe(
      'Azure ML workspace name (required). Push the image to an ACR the workspace can pull from (its own, or one it has AcrPull on).',
    ),
    endpoint: text('an endpoint name')
      .regex(/^([a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9])?$/, {
        error: 'expected 3 to 32 letters, digits and "-", starting with a letter',
      })
      .default('')
      .describe('Online endpoint name, 3 to 32 characters; empty: the model name.'),
    authMode: z
      .enum(['key', 'aml_token'], { error: 'expected key or aml_token' })
      .default('key')
      .describe('key (endpoint keys) or aml_token (Azure ML tokens for Entra ID identities).'),
    instanceType: text('an instance type like Standard_DS3_v2')
      .regex(/^Standard_[A-Za-z0-9_]+$/, {
        error: 'expected an instance type like Standard_DS3_v2',
      })
      .default('Standard_DS3_v2')
      .describe("The deployment's VM size."),
    instanceCount: int(1, 1000, 'an instance count').default(1).describe("The deployment's instances."),
    requestTimeoutMs: int(1, 180_000, 'milliseconds').default(5000).describe("Azure ML's per-request timeout, 1 to 180000."),
    maxConcurrentRequestsPerInstance: int(1, 1000, 'a concurrency').default(1).describe('Requests one instance is given at a time.'),
    probe: z
      .object({
        initialDelaySeconds: int(0, 3600, 'seconds').default(10),
        periodSeconds: int(1, 3600, 'seconds').default(10),
        timeoutSeconds: int(1, 3600, 'seconds').default(2),
        failureThreshold: int(1, 1000, 'a count').default(30),
      })
      .strict()
      .prefault({})
      .describe("Liveness and readiness probe settings (the routes are the server's /v2/health/live and /v2/health/ready)."),
    mirror: int(0, 50, 'a percentage (Azure ML mirrors at most 50)')
      .default(0)
      .describe('Percent of live traffic copied to the new deployment for one bake before it takes any (answers discarded); 0: none, at most 50.'),
    canary: trafficSteps.default([100]).describe('Live traffic percentages for the new deployment, each baked and checked; [100]: all at once.'),
    waitIntervalSeconds: int(0, 3600, 'seconds').default(300).describe('How long each mirror or canary step bakes before the deployment is checked again.'),
    readyTimeoutSeconds: readyTimeout(1800),
  })
  .strict();

const environmentVariable = text('an environment variable name').regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: 'expected an environment variable name' });
const containerAppTarget = z
  .object({
    type: z.literal('containerapp'),
    subscriptionId: required(azure.subscriptionId).describe('Azure subscription id (required); credentials as for azureml.'),
    resourceGroup: required(azure.resourceGroup).describe("The app's resource group (required)."),
    location: required(azure.location).describe("The environment's region (required)."),
    armEndpoint: azure.armEndpoint.describe('Azure Resource Manager, as for azureml.'),
    environment: required(
      text('a Container Apps environment name or resource id').min(1, {
        error: 'expected a Container Apps environment name or resource id',
      }),
    ).describe('Container Apps environment: a name in the resource group or a full resource id (required).'),
    app: text('an app name')
      .regex(/^([a-z][a-z0-9-]{0,30}[a-z0-9])?$/, {
        error: 'expected 2 to 32 lowercase letters, digits and "-", starting with a letter',
      })
      .default('')
      .describe("App name (2 to 32 lowercase letters, digits, '-'); empty: the model name."),
    cpu: z
      .number({ error: 'expected CPUs like 0.5' })
      .min(0.25, { error: 'expected at least 0.25 CPU' })
      .max(4, { error: 'expected at most 4 CPUs' })
      .default(0.5)
      .describe("CPUs per replica, 0.25 to 4, with memory in the platform's fixed ratio (0.5 CPU: 1Gi)."),
    memory: text('a size like "1Gi"')
      .regex(/^\d+(\.\d+)?Gi$/, { error: 'expected a size like "1Gi" or "0.5Gi"' })
      .default('1Gi')
      .describe('Memory per replica, in the ratio cpu takes (2Gi per CPU).'),
    minReplicas: int(0, 1000, 'a replica count').default(0).describe('0 scales to zero when idle (the first request then waits for a cold start).'),
    maxReplicas: int(1, 1000, 'a replica count').default(10).describe('Most replicas the app scales out to.'),
    concurrentRequests: int(1, 10_000, 'a concurrency').default(10).describe('The HTTP scale rule: concurrent requests per replica before another is added.'),
    external: bool().default(true).describe("Ingress reachable from the internet; false: only inside the environment's network (no smoke test from outside)."),
    transport: z
      .enum(['auto', 'http', 'http2'], { error: 'expected auto, http or http2' })
      .default('auto')
      .describe(
        "Ingress transport to the server's REST port 8080: auto, http or http2. The gRPC port " +
          '(8081) is not exposed (Container Apps ingress maps one port outside a VNet).',
      ),
    registryIdentity: text('a managed identity resource id')
      .regex(/^(\/subscriptions\/[^/]+\/resourceGroups\/[^/]+\/providers\/Microsoft\.ManagedIdentity\/userAssignedIdentities\/[^/]+)?$/i, {
        error: 'expected a user-assigned identity resource id (/subscriptions/.../providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>)',
      })
      .default('')
      .describe(
        'A user-assigned identity (resource id) with AcrPull on the registry; empty: ' +
          'MLOPS_REGISTRY_USERNAME/PASSWORD at deploy time become a registry secret, or none for a public image.',
      ),
    env: z
      .record(environmentVariable, z.string({ error: 'expected a string' }), { error: 'expected an object of NAME: value' })
      .default({})
      .describe('Plain environment variables for the server (see docs/server.md).'),
    secretEnv: z
      .record(
        environmentVariable,
        text('the name of an environment variable here').regex(/^[A-Za-z_][A-Za-z0-9_]*$/, {
          error: 'expected the name of an environment variable on the deploying machine',
        }),
        { error: 'expected an object of NAME: VARIABLE_HOLDING_ITS_VALUE' },
      )
      .default({})
      .describe('Variables kept as Container Apps secrets: NAME -> the variable on the deploying machine that holds the value (a CI secret).'),
    canary: trafficSteps
      .default([100])
      .describe('Live traffic percentages for the new revision, each baked and checked through its label URL; [100]: all at once.'),
    waitIntervalSeconds: int(0, 3600, 'seconds').default(60).describe('How long each canary step bakes before the revision is checked again.'),
    readyTimeoutSeconds: readyTimeout(900),
  })
  .strict();

/** One deploy target: its `type` picks the adapter and the fields it takes. */
export const targetSchema = z.discriminatedUnion(
  'type',
  [localTarget, kubernetesTarget, cloudRunTarget, kserveTarget, sageMakerTarget, vertexTarget, lambdaTarget, azureMLTarget, containerAppTarget],
  { error: 'expected "type": "local", "kubernetes", "cloudrun", "kserve", "sagemaker", "vertex", "lambda", "azureml" or "containerapp"' },
);

const signSection = z
  .object({
    keyFile: text('a path to a PEM private key (mlops keygen writes one)')
      .default('')
      .describe(
        'The ECDSA P-256 private key (PEM) to sign with, mode 0600 (`mlops keygen --output <dir>` makes one). The environment variable ' +
          'MLOPS_SIGNING_KEY (the PEM text, as CI secrets arrive) wins over it. Neither: versions are pushed unsigned, with a warning.',
      ),
  })
  .strict();

const optimizeSection = z
  .object({
    output: text('a path for the optimized model')
      .default('')
      .describe('Where the optimized model is written (only when its gates pass, or with --keep). --output overrides.'),
    quantize: z
      .enum(['none', 'dynamic', 'static'], { error: 'expected "none", "dynamic" or "static"' })
      .default('none')
      .describe(
        "none: ONNX Runtime's graph optimization only; dynamic: MatMul and Gemm weights INT8, activations quantized at run time; " +
          'static: QuantizeLinear/DequantizeLinear pairs with ranges calibrated on rows (MatMul, Gemm and Conv).',
      ),
    calibration: text('a path to calibration rows (.csv, .jsonl, .npy)')
      .default('')
      .describe('Rows for static quantization (any holdout format; labels not needed); empty: monitor.reference, else test.holdout.'),
    calibrationRows: int(1, 10_000_000, 'a row count').default(256).describe('At most this many calibration rows are run.'),
    method: z
      .enum(['minmax', 'percentile'], { error: 'expected "minmax" or "percentile"' })
      .default('minmax')
      .describe(
        "How a tensor's range is taken from the calibration rows: minmax (the whole range) or " +
          'percentile (cut at `percentile` and its mirror, against outliers).',
      ),
    percentile: z
      .number({ error: 'expected a percentile, like 99.999' })
      .gt(50, { error: 'expected a percentile above 50' })
      .max(100, { error: 'expected a percentile <= 100' })
      .default(99.999)
      .describe('With method percentile: 99.999 keeps the values between the 0.001st and 99.999th percentiles.'),
    perChannel: bool().default(true).describe('Static quantization: Conv weights get one scale per output channel (needs opset 13).'),
    exclude: z
      .array(z.string(), { error: 'expected a list of node names or op types' })
      .default([])
      .describe('Node names or op types that stay in float (a layer that loses too much). --exclude adds to them.'),
    level: z
      .enum(['basic', 'extended', 'all'], { error: 'expected "basic", "extended" or "all"' })
      .default('extended')
      .describe(
        "ONNX Runtime's graph optimization level the saved model gets: basic (standard ops only), extended (fused ops, e.g. " +
          'QLinearConv, DynamicQuantizeMatMul), all (also layout changes for this CPU type: run it on the same kind of machine).',
      ),
    gates: gates
      .default({})
      .describe(
        'Metric -> comparison: <metric>_drop (accuracy_drop, f1_macro_drop, rmse_drop, ...: positive is worse), speedup ' +
          '(source p50 / optimized p50), throughput_ratio, size_ratio, max_abs_diff, mean_abs_diff, class_change_rate, ' +
          "error_rate (the optimized model's failed benchmark requests). Empty: accuracy_drop <= 0.01 (r2_drop for " +
          'regression). error_rate <= 0 applies unless an error_rate gate is given. Also --gate.',
      ),
    bench: z
      .object({
        concurrency: int(1, 1024, 'a concurrency').default(1).describe('Closed-loop clients in the side-by-side in-process benchmark.'),
        batch: int(1, 65536, 'a row count')
          .default(1)
          .describe('Rows a request in that benchmark: the batch your clients send (INT8 kernels gain more on larger batches).'),
        durationSeconds: seconds().default(3).describe('Length of each benchmark run.'),
        rounds: int(1, 20, 'a round count').default(2).describe('Rounds, alternating source and optimized model; medians are reported.'),
      })
      .strict()
      .prefault({}),
  })
  .strict();

const explainSection = z
  .object({
    samples: int(2, 1_000_000, 'a coalition count')
      .default(256)
      .describe(
        'Kernel SHAP coalitions per explained row: all of them (exact values) when 2^features - 2 fit, else the largest sizes ' +
          'whole and the rest sampled. One explanation costs samples x backgroundRows model rows, in batches.',
      ),
    backgroundRows: int(0, 100_000, 'a row count')
      .default(100)
      .describe(
        'Reference rows the attributions are measured against, a seeded sample (every row when there are fewer). ' +
          '`mlops build` bakes this many rows of the reference data (monitor.reference, else test.holdout) into the ' +
          "image's reference profile for the server's explain route: real rows travel in the image. 0: none baked " +
          '(the explain route then answers 409); `mlops explain` needs at least 1.',
      ),
    rows: int(1, 1_000_000, 'a row count').default(50).describe('Holdout rows attributed (a seeded sample) for the mean |attribution| per feature.'),
    repeats: int(1, 1000, 'a repeat count')
      .default(5)
      .describe("Shuffles of each feature's column for permutation importance; the report gives their mean and spread."),
    metric: text('a metric name, like accuracy or r2')
      .default('')
      .describe('The test metric permutation importance watches; empty: accuracy (classification) or r2 (regression).'),
    seed: int(0, 2 ** 31 - 1, 'a seed')
      .default(7)
      .describe('Seeds every sample and shuffle: the same report on every run.'),
    maxRows: int(1, 100_000, 'a row count')
      .default(16)
      .describe("The most rows one request to the server's explain route may ask for: each costs samples x backgroundRows model rows in a worker thread."),
    patch: int(1, 4096, 'a patch size')
      .default(8)
      .describe(
        'Occlusion, for image-like inputs on the explain route: patches of patch x patch ' +
          'positions (all channels) are set to 0 in turn; each costs a model row.',
      ),
  })
  .strict();

const deploySection = z
  .object({
    verify: z
      .object({
        key: text('a path to a PEM public key (mlops.pub)')
          .default('')
          .describe(
            'A public key (PEM, mlops.pub). When set, `mlops deploy` and `mlops rollback` first verify the version in the registry and ' +
              'refuse (exit 5) one that is unsigned, signed by another key, or whose digest changed since signing. Empty: no check.',
          ),
      })
      .strict()
      .prefault({}),
  })
  .strict();

const monitorSection = z
  .object({
    reference: text('a path to a dataset (.csv, .jsonl, .npy)')
      .default('')
      .describe(
        'The dataset (.csv, .jsonl, or .npy; labels not needed) the reference profile is learned from; empty: ' +
          'test.holdout. With neither, the image counts predicted classes only and monitor reports no drift.',
      ),
    bins: int(2, 100, 'a bin count').default(10).describe("Bins per feature, with edges at the reference's quantiles (2 to 100)."),
    windowRows: int(1, 10_000_000, 'a row count').default(10_000).describe("Rows in the server's sliding window; monitor judges the window unless --all."),
    minRows: int(0, 1_000_000_000, 'a row count')
      .default(500)
      .describe('Fewer live rows than this are too few to judge: a warning and exit 0, or exit 1 under --strict.'),
    featurePsi: z
      .number({ error: 'expected a PSI threshold, like 0.1' })
      .positive({ error: 'expected a PSI threshold above 0' })
      .default(0.1)
      .describe("A feature counts as drifted at this PSI and above (Evidently's 0.1)."),
    gates: gates
      .default({})
      .describe(
        'Metric -> comparison. Drift metrics (psi_max, js_max, drifted_share, drifted_count, out_of_range_rate, missing_rate, ' +
          "prediction_psi, prediction_js) gate the drift check; with none, Evidently's dataset drift rule applies, drifted_share < " +
          "0.5. `mlops test`'s metrics (accuracy, f1_macro, roc_auc, mae, ...) gate live quality under --labels.",
      ),
    maxDrop: maxDrop
      .default({})
      .describe(
        "Metric -> the most live quality (--labels) may fall behind the serving version's own `mlops test` " +
          'metrics, as stamped on its image by `mlops tag` (or --baseline), e.g. {"accuracy": 0.02}. ' +
          'Lower-is-better metrics (log_loss, mae, rmse, ...) may rise by at most that much.',
      ),
  })
  .strict();

const benchSection = z
  .object({
    concurrency: z
      .array(int(1, 10_000, 'a concurrency'), { error: 'expected a list of concurrencies, like [1, 8, 32]' })
      .default([1, 8, 32])
      .describe('Closed-loop runs: one per concurrency (that many clients, each sending as soon as its last answer came). --concurrency 1,8,32 overrides.'),
    rates: z
      .array(z.number({ error: 'expected requests a second' }).positive({ error: 'expected a rate above 0' }), {
        error: 'expected a list of rates in requests a second, like [200, 500]',
      })
      .default([])
      .describe('Open-loop runs: one per arrival rate (requests a second on a fixed schedule; latency counts from the scheduled time). --rate overrides.'),
    batch: z
      .array(int(1, 65536, 'a row count'), { error: 'expected a list of rows per request, like [1, 8]' })
      .min(1, {
        error: 'expected at least one batch size',
      })
      .default([1])
      .describe('Rows per request; every run is repeated for each. --batch overrides.'),
    durationSeconds: seconds().default(10).describe('Length of each measured run. --duration (10s, 500ms, 1m) or --requests N overrides.'),
    warmupSeconds: z
      .number({ error: 'expected seconds' })
      .min(0, { error: 'expected seconds >= 0' })
      .default(2)
      .describe('Load sent before each run and not counted.'),
    workers: int(1, 64, 'a thread count').default(1).describe('Load generator threads for HTTP targets.'),
    seed: int(0, 2 ** 31 - 1, 'a seed')
      .default(1)
      .describe("Seed for the random inputs generated from the model's signature."),
    gates: gates
      .default({})
      .describe(
        'Latency gates, checked on every run: p50_ms, p90_ms, p95_ms, p99_ms, max_ms, mean_ms, ' +
          "throughput_rps, error_rate -> comparison. Also --gate 'p95_ms<=20'.",
      ),
    regression: z
      .object({
        tolerance: z
          .number({ error: 'expected a fraction, like 0.1' })
          .min(0, { error: 'expected a fraction >= 0' })
          .default(0.1)
          .describe("With --baseline <report.json>: how much worse a run may be than the baseline's matching run (0.1 = 10%)."),
        metrics: z
          .array(z.string(), { error: 'expected a list of metric names' })
          .default(['p95_ms', 'throughput_rps'])
          .describe('Which metrics the baseline comparison checks.'),
      })
      .strict()
      .prefault({}),
  })
  .strict();

/**
 * A copy of a field or section with its defaults taken out. A model of several takes what it leaves out from
 * the top-level sections (config/normalize.ts), so parsing it must leave those fields out, not fill them in.
 */
function withoutDefaults<T extends z.ZodType>(schema: T): z.ZodType<z.input<T>, z.input<T>> {
  const strip = (s: z.ZodType): z.ZodType => {
    if (s instanceof z.ZodDefault || s instanceof z.ZodPrefault || s instanceof z.ZodOptional) return strip(s.unwrap() as z.ZodType).optional();
    if (s instanceof z.ZodObject) {
      const shape = Object.entries(s.shape as Record<string, z.ZodType>).map(([key, field]) => [key, strip(field)]);
      return s.clone({ ...s.def, shape: Object.fromEntries(shape) as z.ZodRawShape });
    }
    return s;
  };
  return strip(schema) as z.ZodType<z.input<T>, z.input<T>>;
}

/** One of the versions a model of several serves side by side. */
export const modelVersionSchema = z
  .object({
    version: required(modelSection.shape.version.unwrap()),
    path: required(modelSection.shape.path.unwrap()),
    weight: z.number({ error: 'expected a share of traffic, like 90' }).min(0, { error: 'expected a share of traffic >= 0' }).default(1),
    shadow: bool().default(false),
  })
  .strict();

/** One model of several: its file and what is its own (holdout, gates, shapes, profile data, workers, batching). */
const modelEntry = z
  .object({
    name: modelSection.shape.name.unwrap().min(1, { error: 'expected a model name (each model of several needs one)' }),
    path: modelSection.shape.path.unwrap(),
    // No default: an entry takes the model's default version only when it lists no versions, which normalize decides.
    version: modelSection.shape.version.unwrap(),
    shapes: withoutDefaults(modelSection.shape.shapes),
    inputData: withoutDefaults(modelSection.shape.inputData),
    preprocess: withoutDefaults(modelSection.shape.preprocess),
    postprocess: withoutDefaults(modelSection.shape.postprocess),
    workers: withoutDefaults(serverSection.shape.workers),
    batching: withoutDefaults(serverSection.shape.batching),
    test: withoutDefaults(testSection),
    monitor: withoutDefaults(monitorSection),
    versions: z
      .array(modelVersionSchema, { error: 'expected a list of versions like [{"version": "2", "path": "v2.onnx", "weight": 90}]' })
      .min(1, { error: 'expected at least one version (or leave versions out)' }),
  })
  .partial()
  .required({ name: true })
  .strict()
  .superRefine((m, ctx) => {
    if (m.versions && (m.path !== undefined || m.version !== undefined))
      ctx.addIssue({ code: 'custom', path: ['versions'], message: 'give either path and version, or versions, not both' });
    if (!m.versions && m.path === undefined) ctx.addIssue({ code: 'custom', path: ['path'], message: 'required, and missing (or list versions)' });
    const seen = new Set<string>();
    m.versions?.forEach((v, i) => {
      if (seen.has(v.version)) ctx.addIssue({ code: 'custom', path: ['versions', i, 'version'], message: `version "${v.version}" is listed twice` });
      seen.add(v.version);
    });
    if (m.versions && m.versions.every((v) => v.shadow))
      ctx.addIssue({ code: 'custom', path: ['versions'], message: 'every version is a shadow: one must serve' });
  });

/** A user's config: parsing it checks every field and fills in every default but those normalize computes. */
const batchSection = z
  .object({
    input: text('a file, folder, glob or s3://, gs://, az:// URI')
      .default('')
      .describe(
        'What `mlops batch` scores: a .csv, .jsonl, .parquet or .npy file, a folder or glob of them, a folder of images (one subfolder per ' +
          'class, or flat), or an s3://, gs:// or az://account/container/ URI of any of these. --input overrides.',
      ),
    output: text('a file, folder or URI')
      .default('')
      .describe(
        'Where the scores go: a .csv, .jsonl or .parquet file (written under a temporary name, renamed when complete), or a folder or URI ' +
          'ending in / (one part file per shard). The manifest (<output>.manifest.json) and rejects (<output>.rejects.jsonl) go beside it. --output overrides.',
      ),
    format: z
      .enum(['', 'csv', 'jsonl', 'parquet'], { error: 'expected csv, jsonl or parquet' })
      .default('')
      .describe("The output's format; empty: the output's extension, else the input's (CSV for images, .npy and texts)."),
    idColumn: text('a column name')
      .default('id')
      .describe(
        "The input column that names each row, copied to the output and not fed to the model. An input without it: each output row carries 'source' " +
          "(the file) and 'row' (its number in the file) instead.",
      ),
    columns: z
      .array(text('a column name'), { error: 'expected a list of column names' })
      .default([])
      .describe("The model's feature columns, in the model's order; empty: every column but the id, in the file's order."),
    batchSize: int(1, 65_536, 'a row count').default(256).describe('Rows per model run; a model whose first dimension is fixed gets its own batch size.'),
    workers: int(0, 1024, 'a worker count').default(0).describe('Worker threads, each with its own ONNX Runtime session of one thread; 0: one per core.'),
    shardMegabytes: int(1, 1_048_576, 'megabytes')
      .default(8)
      .describe(
        'The input is split into shards of about this many megabytes (whole rows, row groups or files): the unit a worker takes, a re-run skips when it is ' +
          'done, and `--shard i/n` or a cluster index runs.',
      ),
    maxRejectRate: z
      .number({ error: 'expected a fraction, like 0.01' })
      .min(0, { error: 'expected a fraction >= 0' })
      .max(1, { error: 'expected a fraction <= 1' })
      .default(0)
      .describe(
        'The gate: the share of rows that may be rejected (a bad value, a model error) before `mlops batch` exits 1. Rejected rows go to the rejects ' +
          'file with the reason, whatever this says.',
      ),
  })
  .strict();

export const configSchema = z
  .object({
    $schema: z.string().optional(),
    // No prefault: whether `model` was given is what `models` is checked against below; normalize fills in its defaults.
    model: modelSection.optional(),
    models: z
      .array(modelEntry, { error: 'expected a list of models like [{"name": "fraud", "path": "fraud.onnx"}]' })
      .default([])
      .describe(
        'Several models in one image and one server, instead of `model`: each {"name", "path", "version"} served at ' +
          '/v2/models/{name}, built as one image layer per model. An entry may set its own "shapes", "inputData", "workers", ' +
          '"batching" and "test" and "monitor" sections (holdout, gates, reference...), which take the top-level values where left ' +
          'out. Versions side by side: "versions": [{"version": "1", "path": "v1.onnx", "weight": 90}, {"version": "2", "path": ' +
          '"v2.onnx", "weight": 10}, {"version": "3", "path": "v3.onnx", "shadow": true}] splits /v2/models/{name}/infer by weight ' +
          "(each answer's model_version says which served), /v2/models/{name}/versions/{v}/infer reaches one, and a shadow gets a " +
          'copy of each request, its answer compared (mlops_shadow_agreement_total) and discarded. `mlops test`, `bench`, `monitor` ' +
          'and `explain` run over every model, or the one --model-name names. Empty: `model`.',
      ),
    server: serverSection
      .prefault({})
      .describe(
        "Settings of `mlops serve` and of the server in every image: `mlops build` writes those changed from these defaults into the image's " +
          'environment (MLOPS_WORKERS, MLOPS_BATCHING, ...; see README, The inference server), where a deploy may override them.',
      ),
    image: imageSection.prefault({}),
    test: testSection.prefault({}),
    targets: z
      .record(z.string().regex(/^[a-z0-9][a-z0-9-]*$/, { error: 'target names are lowercase letters, digits and "-"' }), targetSchema, {
        error: 'expected an object of target name: target',
      })
      .default({})
      .describe(
        'Deploy targets for `mlops deploy --target NAME`, by name. The targets below are examples, one of each type (keys ' +
          'starting with // are ignored): remove the // to use one. Fields not given take the defaults shown.',
      ),
    sign: signSection
      .prefault({})
      .describe(
        '`mlops push` signs each version it pushes (a Sigstore bundle attached to the image in the registry, beside its SBOM). See README "Supply chain".',
      ),
    optimize: optimizeSection
      .prefault({})
      .describe('`mlops optimize`: graph optimization and INT8 quantization, gated on quality, agreement, speed and size. See README "Optimizing a model".'),
    explain: explainSection
      .prefault({})
      .describe(
        '`mlops explain`: which features the model relies on, over the holdout (Kernel SHAP ' +
          'attributions and permutation importance). See README "Explaining a model".',
      ),
    deploy: deploySection.prefault({}),
    monitor: monitorSection.prefault({}).describe('`mlops monitor`: the reference profile `mlops build` bakes into the image, and the drift gates.'),
    bench: benchSection.prefault({}),
    batch: batchSection
      .prefault({})
      .describe('`mlops batch`: a dataset scored by the model, on this machine with every core or as a job on a target. See docs/batch.md.'),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.models.length > 0 && c.model) ctx.addIssue({ code: 'custom', path: ['models'], message: 'give either model (one) or models (several), not both' });
    const seen = new Set<string>();
    c.models.forEach((m, i) => {
      if (seen.has(m.name)) ctx.addIssue({ code: 'custom', path: ['models', i, 'name'], message: `model "${m.name}" is listed twice` });
      seen.add(m.name);
    });
  });

/** A config as a user writes it: every field with a default may be left out. */
export type RawConfig = z.input<typeof configSchema>;
/** A config once parsed: every default filled in but `model`'s and those normalize computes. */
export type ParsedConfig = z.output<typeof configSchema>;

/** One "path: message" line per problem, all at once. */
export function describeIssues(error: z.ZodError): string[] {
  return error.issues.map((issue) => {
    const at = issue.path.map(String).join('.');
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => `${at ? `${at}.` : ''}${key}: unknown field (remove it, or check its spelling in mlops.config.example.json)`).join('\n');
    }
    if (/nonoptional/.test(issue.message)) return `${at}: required, and missing`;
    return `${at || '(top level)'}: ${issue.message}`;
  });
}
