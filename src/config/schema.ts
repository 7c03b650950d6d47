import { z } from 'zod';

/** ">= 0.95", "<=20", "> 0", "== 1": a gate threshold. */
export const COMPARISON = /^\s*(>=|<=|==|>|<)\s*(-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$/;

const comparison = z.string({ error: 'expected a comparison like ">= 0.9"' }).regex(COMPARISON, {
  error: 'expected a comparison like ">= 0.9"',
});
const int = (min: number, max: number, what = 'an integer') =>
  z
    .number({ error: `expected ${what} from ${min} to ${max}` })
    .int({ error: `expected ${what} from ${min} to ${max}` })
    .min(min, { error: `expected ${what} from ${min} to ${max}` })
    .max(max, { error: `expected ${what} from ${min} to ${max}` });
const text = (what: string) => z.string({ error: `expected ${what}` });
const trafficSteps = z
  .array(int(1, 100, 'a percentage'), { error: 'expected traffic steps like [10, 50, 100]' })
  .min(1, { error: 'expected at least one step' })
  .refine((steps) => steps.at(-1) === 100 && steps.every((p, i) => i === 0 || p > steps[i - 1]), {
    error: 'expected rising steps ending at 100, like [10, 50, 100]',
  });
const resources = z
  .object({
    requests: z.object({ cpu: z.string(), memory: z.string() }).partial().strict(),
    limits: z.object({ cpu: z.string(), memory: z.string() }).partial().strict(),
  })
  .partial()
  .strict();
const secretName = text('a Secret name').regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, { error: 'expected a Secret name (lowercase letters, digits, "-", ".")' });
/** Who a target's pods run as, and how they pull from a private registry. */
const podIdentity = {
  serviceAccountName: text('a ServiceAccount name').regex(/^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$/, {
    error: 'expected a ServiceAccount name (lowercase letters, digits, "-", ".")',
  }),
  imagePullSecrets: z.array(secretName, { error: 'expected a list of Secret names' }),
};
/** A token Secret and a TLS Secret mounted into a target's pods (Kubernetes, KServe). */
const kubeSecrets = {
  auth: z.object({ secretName }).strict(),
  tls: z
    .object({ secretName, clientCa: z.boolean({ error: 'expected true or false' }) })
    .partial()
    .required({ secretName: true })
    .strict(),
};
const awsRegion = text('an AWS region like eu-west-1').regex(/^[a-z]{2}(-[a-z]+)+-\d$/, { error: 'expected an AWS region like eu-west-1' });
/** Where an Azure target lives. */
const azureResource = {
  subscriptionId: text('a subscription id').regex(/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/, {
    error: 'expected a subscription id (a GUID)',
  }),
  resourceGroup: text('a resource group name').regex(/^[-\w._()]{1,89}[-\w_()]$/, { error: 'expected a resource group name' }),
  location: text('an Azure region like westeurope').regex(/^[a-z0-9]+$/, { error: 'expected an Azure region like westeurope' }),
  armEndpoint: text('an https URL')
    .url({ error: 'expected an https URL like https://management.azure.com' })
    .startsWith('https://', { error: 'expected an https URL like https://management.azure.com' }),
};
const kubeName = (what: string) => text(what).regex(/^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$/, { error: 'expected a DNS label (lowercase letters, digits, "-")' });

const size = z.object({ height: int(1, 65536, 'pixels'), width: int(1, 65536, 'pixels') }).strict();
const positive = (what: string) => z.number({ error: `expected ${what}` }).positive({ error: `expected ${what} above 0` });
/** model.preprocess: how raw images and texts become the model's tensors; each field wins over the export folder's files. */
const preprocess = z
  .object({
    image: z
      .object({
        input: text('a model input name'),
        convertRgb: z.boolean({ error: 'expected true or false' }),
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

const sections = z
  .object({
    $schema: z.string().optional(),
    model: z
      .object({
        path: text('a path to an .onnx file').min(1, { error: 'expected a path to an .onnx file' }),
        name: text('a model name').regex(/^(?:[a-z0-9][a-z0-9._-]*)?$/, {
          error: 'expected lowercase letters, digits, ".", "_" or "-", starting with a letter or digit',
        }),
        version: text('a version string').min(1, { error: 'expected a non-empty version string' }),
        shapes: z.record(z.string(), z.array(int(1, 2 ** 31 - 1, 'a dimension size'), { error: 'expected a list of dimension sizes like [1, 512]' }), {
          error: 'expected an object of input name to shape, like {"input": [1, 512]}',
        }),
        inputData: text('"random", "zero" or the path of a JSON file in perf_analyzer\'s input format').min(1, {
          error: 'expected "random", "zero" or a file path',
        }),
        preprocess: preprocess,
        postprocess: postprocess,
      })
      .partial()
      .strict(),
    server: z
      .object({
        host: text('a host name or address'),
        port: int(0, 65535, 'a port'),
        grpcPort: int(0, 65535, 'a port (0 turns gRPC off)'),
        maxBodyBytes: int(1024, 2 ** 31 - 1, 'a size in bytes'),
        allowNonFinite: z.boolean({ error: 'expected true or false' }),
        inferenceTimeoutMs: int(1, 3_600_000, 'milliseconds'),
        maxPendingBodyBytes: int(1024, 2 ** 40, 'a size in bytes'),
        minBodyRate: int(0, 2 ** 31 - 1, 'bytes a second (0: no minimum)'),
        responseCache: z
          .object({ maxBytes: int(0, 2 ** 40, 'a size in bytes (0: no cache)') })
          .partial()
          .strict(),
        trustedProxies: z.array(
          text('an IP address or CIDR range like "fd00::/8"').regex(/^[0-9A-Fa-f:.]+(\/\d{1,3})?$/, {
            error: 'expected an IP address or CIDR range like "127.0.0.1" or "fd00::/8"',
          }),
          { error: 'expected a list of addresses, like ["127.0.0.1"]' },
        ),
        workers: int(0, 64, 'a thread count (0: inference on the main thread)'),
        inlineMaxMs: z
          .number({ error: 'expected milliseconds' })
          .min(0, { error: 'expected milliseconds >= 0' })
          .max(1000, { error: 'expected milliseconds <= 1000' }),
        offloadBytes: int(0, 2 ** 31 - 1, 'a size in bytes'),
        shutdownTimeoutMs: int(0, 600_000, 'milliseconds'),
        repositoryControl: z.boolean({ error: 'expected true or false' }),
        memoryBudget: text('a size like "2Gi"').regex(/^(\s*\d+(\.\d+)?\s*([KMGT]i|[KMGT]B?|B)?\s*)?$/, {
          error: 'expected a size like "512Mi", "2Gi" or "1G" (empty: no budget)',
        }),
        intraOpThreads: int(0, 1024, 'a thread count'),
        batching: z
          .object({
            enabled: z.boolean({ error: 'expected true or false' }),
            maxBatchSize: int(1, 65536, 'a batch size'),
            maxWaitMs: z.number({ error: 'expected milliseconds' }).min(0, { error: 'expected milliseconds >= 0' }).max(10_000, {
              error: 'expected milliseconds <= 10000',
            }),
          })
          .partial()
          .strict(),
        inferenceLog: z
          .object({
            sample: z
              .number({ error: 'expected a share of requests from 0 to 1' })
              .min(0, { error: 'expected a share of requests from 0 to 1' })
              .max(1, { error: 'expected a share of requests from 0 to 1' }),
            sink: text('"stdout", "file:/absolute/path.jsonl" or an http(s):// URL').regex(/^(?:stdout|file:\/.+|https?:\/\/.+)$/, {
              error: 'expected "stdout", "file:/absolute/path.jsonl" or an http(s):// URL',
            }),
            inputs: z.boolean({ error: 'expected true or false' }),
          })
          .partial()
          .strict(),
        auth: z
          .object({
            tokenFile: text('a path to a file of tokens'),
            metrics: z.boolean({ error: 'expected true or false' }),
            clientAddressHeader: text('a header name like "x-forwarded-for"').regex(/^([A-Za-z0-9-]+)?$/, {
              error: 'expected a header name like "x-forwarded-for"',
            }),
            reloadIntervalMs: int(100, 3_600_000, 'milliseconds'),
          })
          .partial()
          .strict(),
        tls: z
          .object({
            cert: text('a path to a PEM certificate'),
            key: text('a path to a PEM private key'),
            clientCa: text('a path to a PEM CA bundle'),
            reloadIntervalMs: int(100, 3_600_000, 'milliseconds'),
          })
          .partial()
          .strict(),
      })
      .partial()
      .strict(),
    image: z
      .object({
        repository: text('an image repository').regex(/^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?\/)*[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$|^$/, {
          error: 'expected an image repository like "registry.example.com/team/model" (lowercase, no tag)',
        }),
        base: text('an image reference').min(1, { error: 'expected an image reference like "node:20-slim"' }),
        platform: z
          .string({ error: 'expected "linux/amd64", "linux/arm64" or both, comma-separated' })
          .regex(/^linux\/(?:amd64|arm64)(?:,linux\/(?:amd64|arm64))?$/, {
            error: 'expected "linux/amd64", "linux/arm64" or both, comma-separated ("linux/amd64,linux/arm64")',
          }),
        builder: z.enum(['auto', 'docker', 'oci'], { error: 'expected "auto", "docker" or "oci"' }),
        port: int(1, 65535, 'a port'),
        grpcPort: int(0, 65535, 'a port (0: no gRPC)'),
      })
      .partial()
      .strict(),
    test: z
      .object({
        holdout: text('a path to a holdout file'),
        labelsFile: text('a path to an .npy file of labels'),
        task: z.enum(['', 'classification', 'regression'], { error: 'expected "classification" or "regression"' }),
        label: text('a column or key name').min(1, { error: 'expected a column or key name' }),
        features: z.union([z.array(z.string()), z.record(z.string(), z.array(z.string()))], {
          error: 'expected a list of column names, or {"input name": [column names]}',
        }),
        labels: z.array(z.string({ error: 'expected class labels as strings' }), { error: 'expected a list of class labels' }),
        output: text('an output name'),
        outputKind: z.enum(['auto', 'probabilities', 'logits'], { error: 'expected "auto", "probabilities" or "logits"' }),
        threshold: z.number({ error: 'expected a number from 0 to 1' }).min(0, { error: 'expected a number from 0 to 1' }).max(1, {
          error: 'expected a number from 0 to 1',
        }),
        batchSize: int(1, 65536, 'a row count'),
        gates: z.record(z.string(), comparison, { error: 'expected an object of metric: comparison' }),
        maxDrop: z.record(
          z.string(),
          z.number({ error: 'expected a number (the largest allowed drop)' }).min(0, {
            error: 'expected a number >= 0',
          }),
          { error: 'expected an object of metric: number' },
        ),
        parity: z
          .object({
            sample: int(0, 1_000_000, 'a row count'),
            tolerance: z.number({ error: 'expected a number >= 0' }).min(0, { error: 'expected a number >= 0' }),
          })
          .partial()
          .strict(),
      })
      .partial()
      .strict(),
    targets: z.record(
      z.string().regex(/^[a-z0-9][a-z0-9-]*$/, { error: 'target names are lowercase letters, digits and "-"' }),
      z.discriminatedUnion(
        'type',
        [
          z
            .object({
              type: z.literal('local'),
              host: text('a host address'),
              port: int(1, 65535, 'a port'),
              grpcPort: int(0, 65535, 'a port (0: gRPC not published)'),
              containerName: text('a container name'),
              restart: z.enum(['no', 'on-failure', 'unless-stopped', 'always'], { error: 'expected no, on-failure, unless-stopped or always' }),
              memory: text('a size like "512m"').regex(/^(\d+[bkmg]?)?$/i, { error: 'expected a size like "512m" or "2g"' }),
              cpus: z.number({ error: 'expected a number of CPUs' }).min(0, { error: 'expected a number of CPUs >= 0' }),
              readyTimeoutSeconds: z.number({ error: 'expected seconds' }).positive({ error: 'expected seconds above 0' }),
              auth: z.object({ tokenFile: text('a path to a token file').min(1, { error: 'expected a path to a token file' }) }).strict(),
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
                }),
            })
            .partial()
            .required({ type: true })
            .strict(),
          z
            .object({
              type: z.literal('kubernetes'),
              context: text('a kubectl context'),
              namespace: text('a namespace').regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, { error: 'expected a DNS label (lowercase letters, digits, "-")' }),
              name: text('a name').regex(/^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$/, { error: 'expected a DNS label (lowercase letters, digits, "-")' }),
              port: int(1, 65535, 'a port'),
              resources,
              autoscaling: z
                .object({
                  minReplicas: int(1, 1000, 'a replica count'),
                  maxReplicas: int(1, 1000, 'a replica count'),
                  cpuTargetPercent: int(1, 100, 'a percentage'),
                })
                .partial()
                .strict(),
              minAvailable: int(0, 1000, 'a pod count'),
              serviceType: z.enum(['ClusterIP', 'NodePort', 'LoadBalancer'], { error: 'expected ClusterIP, NodePort or LoadBalancer' }),
              rolloutTimeoutSeconds: int(1, 86_400, 'seconds'),
              preStopSeconds: int(0, 300, 'seconds'),
              ...podIdentity,
              ...kubeSecrets,
              networkPolicy: z
                .object({
                  namespaces: z.array(kubeName('a namespace').min(1), { error: 'expected a list of namespaces' }),
                  podLabels: z.record(z.string(), z.string(), { error: 'expected an object of label: value' }),
                })
                .partial()
                .strict(),
            })
            .partial()
            .required({ type: true })
            .strict(),
          z
            .object({
              type: z.literal('cloudrun'),
              project: text('a Google Cloud project id').min(1, { error: 'expected a Google Cloud project id' }),
              region: text('a region like europe-west1').min(1, { error: 'expected a region like europe-west1' }),
              service: text('a service name'),
              concurrency: int(1, 1000, 'a concurrency'),
              cpu: text('CPUs, like "1"'),
              memory: text('a size like "512Mi"'),
              minInstances: int(0, 1000, 'an instance count'),
              maxInstances: int(1, 1000, 'an instance count'),
              canary: trafficSteps,
              allowUnauthenticated: z.boolean({ error: 'expected true or false' }),
              readyTimeoutSeconds: z.number({ error: 'expected seconds' }).positive({ error: 'expected seconds above 0' }),
              auth: z
                .object({
                  secret: text('a Secret Manager secret, "name:version"').regex(/^[A-Za-z0-9_-]+:(latest|\d+)$/, {
                    error: 'expected a Secret Manager secret as "name:version", like "mlops-tokens:latest"',
                  }),
                })
                .strict(),
            })
            .partial()
            .required({ type: true, project: true, region: true })
            .strict(),
          z
            .object({
              type: z.literal('kserve'),
              context: text('a kubectl context'),
              namespace: kubeName('a namespace').min(1, { error: 'expected a namespace' }),
              name: kubeName('a name'),
              deploymentMode: z.enum(['Knative', 'Standard'], { error: 'expected Knative or Standard' }),
              resources,
              minReplicas: int(0, 1000, 'a replica count'),
              maxReplicas: int(1, 1000, 'a replica count'),
              canary: trafficSteps,
              readyTimeoutSeconds: int(1, 86_400, 'seconds'),
              ...podIdentity,
              ...kubeSecrets,
            })
            .partial()
            .required({ type: true })
            .strict()
            .refine((t) => (t.canary ?? [100]).length === 1 || t.deploymentMode !== 'Standard', {
              error: 'KServe moves traffic in steps only in Knative mode; use [100] with deploymentMode Standard',
              path: ['canary'],
            }),
          z
            .object({
              type: z.literal('sagemaker'),
              region: awsRegion,
              executionRoleArn: text('an IAM role ARN').regex(/^arn:aws[a-z-]*:iam::\d{12}:role\/.+$/, {
                error: 'expected an IAM role ARN like arn:aws:iam::123456789012:role/SageMakerExecution',
              }),
              endpoint: text('an endpoint name').regex(/^([a-zA-Z0-9](-*[a-zA-Z0-9]){0,62})?$/, { error: 'expected letters, digits and "-", at most 63' }),
              mode: z.enum(['realtime', 'serverless'], { error: 'expected realtime or serverless' }),
              instanceType: text('an instance type like ml.m5.large').regex(/^ml\.[a-z0-9]+\.[a-z0-9]+$/, {
                error: 'expected an instance type like ml.m5.large',
              }),
              instanceCount: int(1, 1000, 'an instance count'),
              serverless: z
                .object({
                  memorySizeMb: z.union(
                    [1024, 2048, 3072, 4096, 5120, 6144].map((m) => z.literal(m)),
                    { error: 'expected 1024, 2048, 3072, 4096, 5120 or 6144' },
                  ),
                  maxConcurrency: int(1, 200, 'a concurrency'),
                  provisionedConcurrency: int(0, 200, 'a concurrency'),
                })
                .partial()
                .strict(),
              canary: trafficSteps.refine((steps) => steps.length <= 2 || steps.every((p, i) => p === Math.min(100, steps[0] * (i + 1))), {
                error: 'SageMaker shifts traffic all at once [100], in one canary step [p, 100], or in equal linear steps [p, 2p, ..., 100]',
              }),
              waitIntervalSeconds: int(0, 3600, 'seconds'),
              alarms: z
                .array(text('a CloudWatch alarm name').min(1), { error: 'expected a list of CloudWatch alarm names' })
                .max(10, { error: 'SageMaker takes at most 10 alarms' }),
              readyTimeoutSeconds: int(1, 86_400, 'seconds'),
            })
            .partial()
            .required({ type: true, region: true, executionRoleArn: true })
            .strict(),
          z
            .object({
              type: z.literal('vertex'),
              project: text('a Google Cloud project id').min(1, { error: 'expected a Google Cloud project id' }),
              region: text('a region like europe-west1').min(1, { error: 'expected a region like europe-west1' }),
              endpoint: text('an endpoint display name'),
              machineType: text('a machine type like n1-standard-2').min(1, { error: 'expected a machine type like n1-standard-2' }),
              minReplicas: int(1, 1000, 'a replica count'),
              maxReplicas: int(1, 1000, 'a replica count'),
              canary: trafficSteps,
              serviceAccount: text('a service account email'),
              readyTimeoutSeconds: int(1, 86_400, 'seconds'),
            })
            .partial()
            .required({ type: true, project: true, region: true })
            .strict(),
          z
            .object({
              type: z.literal('lambda'),
              region: awsRegion,
              roleArn: text('an IAM role ARN').regex(/^arn:aws[a-z-]*:iam::\d{12}:role\/.+$/, {
                error: 'expected an IAM role ARN like arn:aws:iam::123456789012:role/mlops-lambda',
              }),
              function: text('a function name').regex(/^([a-zA-Z0-9-_]{1,64})?$/, { error: 'expected letters, digits, "-" and "_", at most 64' }),
              alias: text('an alias name').regex(/^(?!^[0-9]+$)[a-zA-Z0-9-_]{1,128}$/, {
                error: 'expected an alias name: letters, digits, "-" and "_", not only digits',
              }),
              architecture: z.enum(['x86_64', 'arm64'], { error: 'expected x86_64 or arm64' }),
              memorySizeMb: int(128, 10_240, 'megabytes'),
              ephemeralStorageMb: int(512, 10_240, 'megabytes'),
              timeoutSeconds: int(1, 900, 'seconds'),
              reservedConcurrency: int(0, 100_000, 'a concurrency'),
              provisionedConcurrency: int(0, 100_000, 'a concurrency'),
              canary: trafficSteps,
              waitIntervalSeconds: int(0, 3600, 'seconds'),
              alarms: z
                .array(text('a CloudWatch alarm name').min(1), { error: 'expected a list of CloudWatch alarm names' })
                .max(100, { error: 'at most 100 alarms' }),
              functionUrl: z.enum(['AWS_IAM', 'NONE', 'off'], { error: 'expected AWS_IAM, NONE or off' }),
              readyTimeoutSeconds: int(1, 86_400, 'seconds'),
            })
            .partial()
            .required({ type: true, region: true, roleArn: true })
            .strict()
            .refine((t) => t.provisionedConcurrency === undefined || t.reservedConcurrency === undefined || t.provisionedConcurrency <= t.reservedConcurrency, {
              error: 'provisionedConcurrency cannot exceed reservedConcurrency',
              path: ['provisionedConcurrency'],
            }),
          z
            .object({
              type: z.literal('azureml'),
              ...azureResource,
              workspace: text('an Azure ML workspace name').min(1, { error: 'expected an Azure ML workspace name' }),
              endpoint: text('an endpoint name').regex(/^([a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9])?$/, {
                error: 'expected 3 to 32 letters, digits and "-", starting with a letter',
              }),
              authMode: z.enum(['key', 'aml_token'], { error: 'expected key or aml_token' }),
              instanceType: text('an instance type like Standard_DS3_v2').regex(/^Standard_[A-Za-z0-9_]+$/, {
                error: 'expected an instance type like Standard_DS3_v2',
              }),
              instanceCount: int(1, 1000, 'an instance count'),
              requestTimeoutMs: int(1, 180_000, 'milliseconds'),
              maxConcurrentRequestsPerInstance: int(1, 1000, 'a concurrency'),
              probe: z
                .object({
                  initialDelaySeconds: int(0, 3600, 'seconds'),
                  periodSeconds: int(1, 3600, 'seconds'),
                  timeoutSeconds: int(1, 3600, 'seconds'),
                  failureThreshold: int(1, 1000, 'a count'),
                })
                .partial()
                .strict(),
              mirror: int(0, 50, 'a percentage (Azure ML mirrors at most 50)'),
              canary: trafficSteps,
              waitIntervalSeconds: int(0, 3600, 'seconds'),
              readyTimeoutSeconds: int(1, 86_400, 'seconds'),
            })
            .partial()
            .required({ type: true, subscriptionId: true, resourceGroup: true, location: true, workspace: true })
            .strict(),
          z
            .object({
              type: z.literal('containerapp'),
              ...azureResource,
              environment: text('a Container Apps environment name or resource id').min(1, {
                error: 'expected a Container Apps environment name or resource id',
              }),
              app: text('an app name').regex(/^([a-z][a-z0-9-]{0,30}[a-z0-9])?$/, {
                error: 'expected 2 to 32 lowercase letters, digits and "-", starting with a letter',
              }),
              cpu: z
                .number({ error: 'expected CPUs like 0.5' })
                .min(0.25, { error: 'expected at least 0.25 CPU' })
                .max(4, { error: 'expected at most 4 CPUs' }),
              memory: text('a size like "1Gi"').regex(/^\d+(\.\d+)?Gi$/, { error: 'expected a size like "1Gi" or "0.5Gi"' }),
              minReplicas: int(0, 1000, 'a replica count'),
              maxReplicas: int(1, 1000, 'a replica count'),
              concurrentRequests: int(1, 10_000, 'a concurrency'),
              external: z.boolean({ error: 'expected true or false' }),
              transport: z.enum(['auto', 'http', 'http2'], { error: 'expected auto, http or http2' }),
              registryIdentity: text('a managed identity resource id').regex(
                /^(\/subscriptions\/[^/]+\/resourceGroups\/[^/]+\/providers\/Microsoft\.ManagedIdentity\/userAssignedIdentities\/[^/]+)?$/i,
                {
                  error: 'expected a user-assigned identity resource id (/subscriptions/.../providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>)',
                },
              ),
              env: z.record(
                text('an environment variable name').regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: 'expected an environment variable name' }),
                z.string({ error: 'expected a string' }),
                { error: 'expected an object of NAME: value' },
              ),
              secretEnv: z.record(
                text('an environment variable name').regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: 'expected an environment variable name' }),
                text('the name of an environment variable here').regex(/^[A-Za-z_][A-Za-z0-9_]*$/, {
                  error: 'expected the name of an environment variable on the deploying machine',
                }),
                { error: 'expected an object of NAME: VARIABLE_HOLDING_ITS_VALUE' },
              ),
              canary: trafficSteps,
              waitIntervalSeconds: int(0, 3600, 'seconds'),
              readyTimeoutSeconds: int(1, 86_400, 'seconds'),
            })
            .partial()
            .required({ type: true, subscriptionId: true, resourceGroup: true, location: true, environment: true })
            .strict(),
        ],
        { error: 'expected "type": "local", "kubernetes", "cloudrun", "kserve", "sagemaker", "vertex", "lambda", "azureml" or "containerapp"' },
      ),
      { error: 'expected an object of target name: target' },
    ),
    sign: z
      .object({ keyFile: text('a path to a PEM private key (mlops keygen writes one)') })
      .partial()
      .strict(),
    optimize: z
      .object({
        output: text('a path for the optimized model'),
        quantize: z.enum(['none', 'dynamic', 'static'], { error: 'expected "none", "dynamic" or "static"' }),
        calibration: text('a path to calibration rows (.csv, .jsonl, .npy)'),
        calibrationRows: int(1, 10_000_000, 'a row count'),
        method: z.enum(['minmax', 'percentile'], { error: 'expected "minmax" or "percentile"' }),
        percentile: z
          .number({ error: 'expected a percentile, like 99.999' })
          .gt(50, { error: 'expected a percentile above 50' })
          .max(100, { error: 'expected a percentile <= 100' }),
        perChannel: z.boolean({ error: 'expected true or false' }),
        exclude: z.array(z.string(), { error: 'expected a list of node names or op types' }),
        level: z.enum(['basic', 'extended', 'all'], { error: 'expected "basic", "extended" or "all"' }),
        gates: z.record(z.string(), comparison, { error: 'expected an object of metric: comparison' }),
        bench: z
          .object({
            concurrency: int(1, 1024, 'a concurrency'),
            batch: int(1, 65536, 'a row count'),
            durationSeconds: z.number({ error: 'expected seconds' }).positive({ error: 'expected seconds above 0' }),
            rounds: int(1, 20, 'a round count'),
          })
          .partial()
          .strict(),
      })
      .partial()
      .strict(),
    explain: z
      .object({
        samples: int(2, 1_000_000, 'a coalition count'),
        backgroundRows: int(0, 100_000, 'a row count'),
        maxRows: int(1, 100_000, 'a row count'),
        patch: int(1, 4096, 'a patch size'),
        rows: int(1, 1_000_000, 'a row count'),
        repeats: int(1, 1000, 'a repeat count'),
        metric: text('a metric name, like accuracy or r2'),
        seed: int(0, 2 ** 31 - 1, 'a seed'),
      })
      .partial()
      .strict(),
    deploy: z
      .object({
        verify: z
          .object({ key: text('a path to a PEM public key (mlops.pub)') })
          .partial()
          .strict(),
      })
      .partial()
      .strict(),
    monitor: z
      .object({
        reference: text('a path to a dataset (.csv, .jsonl, .npy)'),
        bins: int(2, 100, 'a bin count'),
        windowRows: int(1, 10_000_000, 'a row count'),
        minRows: int(0, 1_000_000_000, 'a row count'),
        featurePsi: z.number({ error: 'expected a PSI threshold, like 0.1' }).positive({ error: 'expected a PSI threshold above 0' }),
        gates: z.record(z.string(), comparison, { error: 'expected an object of metric: comparison' }),
        maxDrop: z.record(
          z.string(),
          z.number({ error: 'expected a number (the largest allowed drop)' }).min(0, {
            error: 'expected a number >= 0',
          }),
          { error: 'expected an object of metric: number' },
        ),
      })
      .partial()
      .strict(),
    bench: z
      .object({
        concurrency: z.array(int(1, 10_000, 'a concurrency'), { error: 'expected a list of concurrencies, like [1, 8, 32]' }),
        rates: z.array(z.number({ error: 'expected requests a second' }).positive({ error: 'expected a rate above 0' }), {
          error: 'expected a list of rates in requests a second, like [200, 500]',
        }),
        batch: z.array(int(1, 65536, 'a row count'), { error: 'expected a list of rows per request, like [1, 8]' }).min(1, {
          error: 'expected at least one batch size',
        }),
        durationSeconds: z.number({ error: 'expected seconds' }).positive({ error: 'expected seconds above 0' }),
        warmupSeconds: z.number({ error: 'expected seconds' }).min(0, { error: 'expected seconds >= 0' }),
        workers: int(1, 64, 'a thread count'),
        seed: int(0, 2 ** 31 - 1, 'a seed'),
        gates: z.record(z.string(), comparison, { error: 'expected an object of metric: comparison' }),
        regression: z
          .object({
            tolerance: z.number({ error: 'expected a fraction, like 0.1' }).min(0, { error: 'expected a fraction >= 0' }),
            metrics: z.array(z.string(), { error: 'expected a list of metric names' }),
          })
          .partial()
          .strict(),
      })
      .partial()
      .strict(),
  })
  .partial()
  .strict();

const modelShape = sections.shape.model.unwrap().shape;
const modelName = modelShape.name.unwrap();
const modelVersion = modelShape.version.unwrap();
const modelPath = modelShape.path.unwrap();

/** One model of several: its file and what is its own (holdout, gates, shapes, profile data, workers, batching). */
const modelEntry = z
  .object({
    name: modelName.min(1, { error: 'expected a model name (each model of several needs one)' }),
    path: modelPath,
    version: modelVersion,
    shapes: modelShape.shapes,
    inputData: modelShape.inputData,
    preprocess: modelShape.preprocess,
    postprocess: modelShape.postprocess,
    workers: sections.shape.server.unwrap().shape.workers,
    batching: sections.shape.server.unwrap().shape.batching,
    test: sections.shape.test,
    monitor: sections.shape.monitor,
    versions: z
      .array(
        z
          .object({
            version: modelVersion,
            path: modelPath,
            weight: z.number({ error: 'expected a share of traffic, like 90' }).min(0, { error: 'expected a share of traffic >= 0' }),
            shadow: z.boolean({ error: 'expected true or false' }),
          })
          .partial()
          .required({ version: true, path: true })
          .strict(),
        { error: 'expected a list of versions like [{"version": "2", "path": "v2.onnx", "weight": 90}]' },
      )
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

/**
 * The shape of a user's config. Every field is optional here; defaults are
 * applied afterwards from DEFAULTS so that they live in one place.
 */
export const configSchema = sections
  .extend({
    models: z.array(modelEntry, { error: 'expected a list of models like [{"name": "fraud", "path": "fraud.onnx"}]' }),
  })
  .partial()
  .strict()
  .superRefine((c, ctx) => {
    if (c.models?.length && c.model) ctx.addIssue({ code: 'custom', path: ['models'], message: 'give either model (one) or models (several), not both' });
    const seen = new Set<string>();
    c.models?.forEach((m, i) => {
      if (seen.has(m.name)) ctx.addIssue({ code: 'custom', path: ['models', i, 'name'], message: `model "${m.name}" is listed twice` });
      seen.add(m.name);
    });
  });

export type RawConfig = z.infer<typeof configSchema>;

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
