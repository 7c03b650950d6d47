/**
 * Every config field's default, in one place. mlops.config.example.json shows
 * the same values with a comment for each; test/config.test.ts keeps them equal.
 */
import type { PostprocessConfig, PreprocessConfig } from './schema.js';
export interface LocalTarget {
  type: 'local';
  /** Host address the port is published on. */
  host: string;
  port: number;
  /** Host port for the image's gRPC port; 0: not published. */
  grpcPort: number;
  /** Empty: mlops-<model>-<target>. */
  containerName: string;
  restart: 'no' | 'on-failure' | 'unless-stopped' | 'always';
  /** Bytes, or a Docker size like "512m"; empty: no limit. */
  memory: string;
  /** CPUs, e.g. 1.5; 0: no limit. */
  cpus: number;
  readyTimeoutSeconds: number;
  /** A token file on this machine, mounted read-only into the container: the server asks every client for one of its tokens. */
  auth?: { tokenFile: string };
  /**
   * Certificate and key on this machine, mounted read-only: the server speaks HTTPS and gRPC over TLS. clientCa: mutual TLS,
   * with clientCert/clientKey for mlops' own smoke test.
   */
  tls?: { cert: string; key: string; clientCa?: string; clientCert?: string; clientKey?: string };
}

export interface KubernetesTarget {
  type: 'kubernetes';
  /** Empty: kubectl's current context. */
  context: string;
  namespace: string;
  /** Deployment, Service, HPA and PDB name; empty: the model name. */
  name: string;
  port: number;
  resources: { requests: { cpu: string; memory: string }; limits: { cpu: string; memory: string } };
  autoscaling: { minReplicas: number; maxReplicas: number; cpuTargetPercent: number };
  minAvailable: number;
  serviceType: 'ClusterIP' | 'NodePort' | 'LoadBalancer';
  rolloutTimeoutSeconds: number;
  /** Seconds the pod waits before the server starts its shutdown, so endpoints drop it first. */
  preStopSeconds: number;
  /** The pods' ServiceAccount; empty: the namespace's default. Its token is never mounted (the server needs no API access). */
  serviceAccountName: string;
  /** Secrets holding the registry's credentials, for a private registry. */
  imagePullSecrets: string[];
  /** A Secret whose key `tokens` is the server's token file, mounted read-only. */
  auth?: { secretName: string };
  /** A kubernetes.io/tls Secret (tls.crt, tls.key; ca.crt too with clientCa: mutual TLS), mounted read-only. */
  tls?: { secretName: string; clientCa?: boolean };
  /** A NetworkPolicy admitting to the model's port only these namespaces and/or pods with these labels (probes come from the node). */
  networkPolicy?: { namespaces?: string[]; podLabels?: Record<string, string> };
}

export interface CloudRunTarget {
  type: 'cloudrun';
  project: string;
  region: string;
  /** Empty: the model name. */
  service: string;
  concurrency: number;
  cpu: string;
  memory: string;
  minInstances: number;
  maxInstances: number;
  /** Traffic percentages to move through, ending at 100; [100]: all at once. */
  canary: number[];
  allowUnauthenticated: boolean;
  readyTimeoutSeconds: number;
  /** A Secret Manager secret ("name:version") holding the server's token file, mounted with --set-secrets. TLS is Cloud Run's own. */
  auth?: { secret: string };
}

export interface KServeTarget {
  type: 'kserve';
  /** Empty: kubectl's current context. */
  context: string;
  namespace: string;
  /** InferenceService name; empty: the model name. */
  name: string;
  /** Knative: scale to zero and canary traffic; Standard: a plain Deployment (no canary). */
  deploymentMode: 'Knative' | 'Standard';
  resources: { requests: { cpu: string; memory: string }; limits: { cpu: string; memory: string } };
  /** 0 lets Knative scale to zero. */
  minReplicas: number;
  maxReplicas: number;
  /** Traffic percentages for the new revision (canaryTrafficPercent), ending at 100; [100]: all at once. */
  canary: number[];
  readyTimeoutSeconds: number;
  /** As for kubernetes targets. */
  serviceAccountName: string;
  imagePullSecrets: string[];
  /** A Secret whose key `tokens` is the server's token file, mounted read-only. */
  auth?: { secretName: string };
  /** A kubernetes.io/tls Secret (tls.crt, tls.key; ca.crt too with clientCa: mutual TLS), mounted read-only. */
  tls?: { secretName: string; clientCa?: boolean };
}

export interface SageMakerTarget {
  type: 'sagemaker';
  region: string;
  /** The IAM role SageMaker assumes to pull the image from ECR and write logs. */
  executionRoleArn: string;
  /** Endpoint name; empty: the model name. */
  endpoint: string;
  /** realtime: instances you size; serverless: memory and concurrency, scales to zero. */
  mode: 'realtime' | 'serverless';
  instanceType: string;
  instanceCount: number;
  serverless: { memorySizeMb: number; maxConcurrency: number; provisionedConcurrency: number };
  /** Blue/green traffic steps ending at 100: [100] all at once, [p, 100] canary, [p, 2p, ..., 100] linear. */
  canary: number[];
  /** Seconds SageMaker bakes each step before the next. */
  waitIntervalSeconds: number;
  /** CloudWatch alarm names; SageMaker rolls back by itself when one fires during the update. */
  alarms: string[];
  readyTimeoutSeconds: number;
}

export interface VertexTarget {
  type: 'vertex';
  project: string;
  region: string;
  /** Endpoint display name; empty: the model name. */
  endpoint: string;
  machineType: string;
  minReplicas: number;
  maxReplicas: number;
  /** Traffic percentages for the new deployed model, ending at 100; [100]: all at once. */
  canary: number[];
  /** The service account the model runs as; empty: Vertex AI's default. */
  serviceAccount: string;
  readyTimeoutSeconds: number;
}

export interface LambdaTarget {
  type: 'lambda';
  region: string;
  /** The execution role the function runs as (it needs ECR pull and CloudWatch Logs rights). */
  roleArn: string;
  /** Function name; empty: the model name. */
  function: string;
  /** The alias clients call, moved to each release once it passes. */
  alias: string;
  /** The image's architecture. */
  architecture: 'x86_64' | 'arm64';
  memorySizeMb: number;
  ephemeralStorageMb: number;
  timeoutSeconds: number;
  /** Concurrency reserved for the function; absent: none reserved. */
  reservedConcurrency?: number;
  /** Warm environments kept on the alias; 0: none (every scale-up is a cold start). */
  provisionedConcurrency: number;
  /** Weighted alias routing steps for the new version, ending at 100; [100]: all at once. */
  canary: number[];
  /** Seconds each canary step bakes, watching the alarms, before the next. */
  waitIntervalSeconds: number;
  /** CloudWatch alarm names; one in ALARM during a step moves the alias back. */
  alarms: string[];
  /** The Function URL on the alias: AWS_IAM (signed requests), NONE (public) or off (no URL). */
  functionUrl: 'AWS_IAM' | 'NONE' | 'off';
  readyTimeoutSeconds: number;
}

/** Where an Azure target lives, and how ARM is reached. */
interface AzureResource {
  subscriptionId: string;
  resourceGroup: string;
  /** The region new resources are made in, like westeurope. */
  location: string;
  /** Azure Resource Manager: https://management.azure.com, or a sovereign cloud's (https://management.chinacloudapi.cn). */
  armEndpoint: string;
}

export interface AzureMLTarget extends AzureResource {
  type: 'azureml';
  workspace: string;
  /** Online endpoint name; empty: the model name. */
  endpoint: string;
  /** key: endpoint keys; aml_token: Azure ML tokens from Entra ID identities. */
  authMode: 'key' | 'aml_token';
  instanceType: string;
  instanceCount: number;
  requestTimeoutMs: number;
  maxConcurrentRequestsPerInstance: number;
  /** The liveness and readiness probes' settings. */
  probe: { initialDelaySeconds: number; periodSeconds: number; timeoutSeconds: number; failureThreshold: number };
  /** Percent of live traffic copied to the new deployment (answers discarded) for one bake before it takes any; 0: none. */
  mirror: number;
  /** Live traffic percentages for the new deployment, ending at 100; [100]: all at once. */
  canary: number[];
  /** Seconds each mirror or canary step bakes before the deployment is checked again. */
  waitIntervalSeconds: number;
  readyTimeoutSeconds: number;
}

export interface ContainerAppTarget extends AzureResource {
  type: 'containerapp';
  /** The Container Apps environment (name in the resource group, or a full resource id); needed to create the app. */
  environment: string;
  /** App name; empty: the model name. */
  app: string;
  cpu: number;
  memory: string;
  /** 0: scale to zero when idle. */
  minReplicas: number;
  maxReplicas: number;
  /** Concurrent HTTP requests per replica before the HTTP scale rule adds one. */
  concurrentRequests: number;
  /** Reachable from the internet (true) or only inside the environment's network. */
  external: boolean;
  /** Ingress transport to the REST port: auto, http (HTTP/1.1) or http2. The gRPC port (8081) is not exposed: ingress maps one port. */
  transport: 'auto' | 'http' | 'http2';
  /** A user-assigned managed identity (resource id) with AcrPull on the registry; empty: the registry login from MLOPS_REGISTRY_USERNAME/PASSWORD, or none for a public image. */
  registryIdentity: string;
  /** Plain environment variables for the server. */
  env: Record<string, string>;
  /** Environment variables kept as Container Apps secrets: variable name -> the name of the variable on the deploying machine that holds its value. */
  secretEnv: Record<string, string>;
  /** Live traffic percentages for the new revision, ending at 100; [100]: all at once. */
  canary: number[];
  waitIntervalSeconds: number;
  readyTimeoutSeconds: number;
}

export type TargetConfig =
  LocalTarget | KubernetesTarget | CloudRunTarget | KServeTarget | SageMakerTarget | VertexTarget | LambdaTarget | AzureMLTarget | ContainerAppTarget;

/** One model of several (config `models`): what it sets of its own over the top-level sections. */
export interface ModelEntry {
  name: string;
  /** The first serving version's (config gives path and version, or versions). */
  path: string;
  version: string;
  /** These take the top-level model's, server's, test's and monitor's values where the entry gives none. */
  shapes: Record<string, number[]>;
  inputData: string;
  preprocess: PreprocessConfig;
  postprocess: PostprocessConfig;
  workers: number;
  batching: Config['server']['batching'];
  test: Config['test'];
  monitor: Config['monitor'];
  /** Versions served side by side: `weight` shares the unversioned traffic, a `shadow` gets copies. One at least, once defaults are applied. */
  versions: { version: string; path: string; weight: number; shadow: boolean }[];
}

/** What a model of `models`, and each of its versions, takes when it does not say. */
export const MODEL_ENTRY_DEFAULTS = { version: '1', weight: 1, shadow: false };

export interface Config {
  model: {
    path: string;
    name: string;
    version: string;
    shapes: Record<string, number[]>;
    inputData: string;
    preprocess: PreprocessConfig;
    postprocess: PostprocessConfig;
  };
  /** Several models in one image and server; empty: the one `model`. */
  models: ModelEntry[];
  server: {
    host: string;
    port: number;
    grpcPort: number;
    maxBodyBytes: number;
    allowNonFinite: boolean;
    inferenceTimeoutMs: number;
    maxPendingBodyBytes: number;
    minBodyRate: number;
    responseCache: { maxBytes: number };
    trustedProxies: string[];
    workers: number;
    inlineMaxMs: number;
    offloadBytes: number;
    shutdownTimeoutMs: number;
    memoryBudget: string;
    repositoryControl: boolean;
    intraOpThreads: number;
    batching: { enabled: boolean; maxBatchSize: number; maxWaitMs: number };
    inferenceLog: { sample: number; sink: string; inputs: boolean };
    auth: { tokenFile: string; metrics: boolean; clientAddressHeader: string; reloadIntervalMs: number };
    tls: { cert: string; key: string; clientCa: string; reloadIntervalMs: number };
  };
  image: { repository: string; base: string; platform: string; builder: 'auto' | 'docker' | 'oci'; port: number; grpcPort: number };
  test: {
    holdout: string;
    labelsFile: string;
    task: '' | 'classification' | 'regression';
    label: string;
    features: string[] | Record<string, string[]>;
    labels: string[];
    output: string;
    outputKind: 'auto' | 'probabilities' | 'logits';
    threshold: number;
    batchSize: number;
    gates: Record<string, string>;
    maxDrop: Record<string, number>;
    parity: { sample: number; tolerance: number };
  };
  targets: Record<string, TargetConfig>;
  sign: { keyFile: string };
  optimize: {
    output: string;
    quantize: 'none' | 'dynamic' | 'static';
    calibration: string;
    calibrationRows: number;
    method: 'minmax' | 'percentile';
    percentile: number;
    perChannel: boolean;
    exclude: string[];
    level: 'basic' | 'extended' | 'all';
    gates: Record<string, string>;
    bench: { concurrency: number; batch: number; durationSeconds: number; rounds: number };
  };
  deploy: { verify: { key: string } };
  explain: { samples: number; backgroundRows: number; rows: number; repeats: number; metric: string; seed: number; maxRows: number; patch: number };
  monitor: {
    reference: string;
    bins: number;
    windowRows: number;
    minRows: number;
    featurePsi: number;
    gates: Record<string, string>;
    maxDrop: Record<string, number>;
  };
  bench: {
    concurrency: number[];
    rates: number[];
    batch: number[];
    durationSeconds: number;
    warmupSeconds: number;
    workers: number;
    seed: number;
    gates: Record<string, string>;
    regression: { tolerance: number; metrics: string[] };
  };
}

export const DEFAULTS: Config = {
  model: {
    /** Relative paths are resolved from the config file's folder. */
    path: 'model.onnx',
    /** Empty: derived from the file name (or its folder when the file is model.onnx). */
    name: '',
    version: '1',
    /** Input name -> its full shape, for the inputs bench and smoke requests generate (--shape); a batch dimension in it takes the rows asked for. */
    shapes: {},
    /** What those requests hold: "random", "zero", or a JSON file in perf_analyzer's input format (--input-data). */
    inputData: 'random',
    /** Images and texts to tensors (image: resize, crop, normalize...; text: maxLength, truncation); empty: what the model folder's preprocessor_config.json and tokenizer files say. */
    preprocess: {},
    /** Scores to labels (function, topK, labels, output); empty: config.json's id2label and problem_type. */
    postprocess: {},
  },
  /**
   * Several models served by one image: each {name, path, version} or {name, versions: [{version, path, weight, shadow}]},
   * with its own shapes, inputData, workers, batching, test and monitor settings over the top-level ones. Empty: `model`.
   */
  models: [],
  server: {
    host: '127.0.0.1',
    port: 8080,
    /** KServe's gRPC port; 0 turns gRPC off. */
    grpcPort: 8081,
    maxBodyBytes: 16 * 1024 * 1024,
    /** NaN and infinities in floating-point inputs are refused (400) on every path; true for models that read NaN as "missing". */
    allowNonFinite: false,
    /** A request not answered by then gets 504 (DEADLINE_EXCEEDED); a run that overstays in a worker is abandoned and the worker replaced. */
    inferenceTimeoutMs: 60_000,
    /** Bytes all request bodies still arriving may hold together; past it new bodies get 503. */
    maxPendingBodyBytes: 128 * 1024 * 1024,
    /**
     * A body (or gRPC message) still arriving that averages fewer bytes a second than this over 10 s
     * is dropped (408, gRPC CANCELLED), as nginx's client_body_timeout and Apache's mod_reqtimeout
     * drop stalled uploads: it holds its share of maxPendingBodyBytes no longer. 0: no minimum.
     */
    minBodyRate: 1024,
    /** Opt-in: the outputs of inputs already answered, kept within maxBytes (least recently used out). 0: no cache. */
    responseCache: { maxBytes: 0 },
    /** Proxies (addresses or CIDR ranges) whose X-Forwarded-For / Forwarded header names the client, for the lock-out and fair shares. */
    trustedProxies: [],
    /**
     * Inference worker threads, each holding its own session (and so its own copy
     * of the weights). Two: on the 2-core machines measured, two workers with one
     * ONNX Runtime thread each served the image fixture 1.8x faster under load
     * than one worker with two threads, for about 40 MiB more (docs/benchmarks.md).
     * A model of several GB wants 1.
     */
    workers: 2,
    /** Models that run a full batch faster than this at start run small batches on the main thread. */
    inlineMaxMs: 1,
    /** Bodies larger than this are decoded, run and encoded whole in a worker thread. */
    offloadBytes: 64 * 1024,
    shutdownTimeoutMs: 10_000,
    /** The most memory the server may take ("2Gi"): the start is refused (exit 2) when the models' sessions would not fit; while serving, what they leave holds bodies and requests in hand (503 past it). Empty: no check. */
    memoryBudget: '',
    /** POST /v2/repository/models/{name}/load and /unload (the OIP repository extension): reload a model's files, or unload it, without a restart. Off: 403. */
    repositoryControl: false,
    /** 0: the cores shared out between the workers (one per core on the main thread). */
    intraOpThreads: 0,
    batching: {
      enabled: true,
      maxBatchSize: 32,
      /**
       * 0: no added wait. Requests that arrive while a batch is running form the
       * next batch, so batching costs nothing at low load (docs/benchmarks.md).
       */
      maxWaitMs: 0,
    },
    /** Off unless sample > 0: a JSON line per row of a sample of requests, for `mlops monitor --labels`. */
    inferenceLog: {
      sample: 0,
      sink: 'stdout',
      inputs: false,
    },
    /** Bearer tokens: on when a token file (or MLOPS_AUTH_TOKENS) gives any. Health probes stay open. */
    auth: {
      tokenFile: '',
      /** /metrics asks for a token too. */
      metrics: false,
      /** Only behind a proxy that sets it: the header naming the client's address (its last entry), for the lock-out. */
      clientAddressHeader: '',
      reloadIntervalMs: 5000,
    },
    /** HTTPS and gRPC over TLS on the same ports when cert and key are set; clientCa turns on mutual TLS. */
    tls: { cert: '', key: '', clientCa: '', reloadIntervalMs: 5000 },
  },
  image: {
    /** Empty: the model name. Add a registry prefix (registry.example.com/team/model) to push. */
    repository: '',
    /** An image with `node` (20 or newer, glibc) on its PATH. */
    base: 'node:20-slim',
    /** One platform, or both comma-separated (an image index; the daemonless builder only). */
    platform: 'linux/amd64',
    /** auto: the Docker engine when one answers, else the daemonless builder. */
    builder: 'auto',
    /** The port the server listens on inside the container. */
    port: 8080,
    grpcPort: 8081,
  },
  test: {
    /** The holdout file (.csv, .jsonl, .npy); --holdout overrides it. */
    holdout: '',
    /** The labels .npy beside an .npy test.holdout (--labels); relative to the config's folder. */
    labelsFile: '',
    /** Empty: detected from the output (a column per class means classification). */
    task: '',
    label: 'label',
    /** CSV columns for the model's inputs; empty: every other column, in file order. */
    features: [],
    /** Class index -> label as written in the holdout; empty: labels are class indices. */
    labels: [],
    /** Which output is scored; empty: the first. */
    output: '',
    outputKind: 'auto',
    /** For a single sigmoid column: the positive class when p >= threshold. */
    threshold: 0.5,
    /** Rows per inference request. */
    batchSize: 256,
    /** Metric name -> comparison, e.g. {"accuracy": ">= 0.95"}. */
    gates: {},
    /** Metric name -> the most it may fall behind --baseline. */
    maxDrop: {},
    parity: { sample: 256, tolerance: 1e-4 },
  },
  targets: {},
  sign: {
    /** The ECDSA P-256 private key (PEM) `mlops push` signs with; MLOPS_SIGNING_KEY (the PEM text) wins. Empty: no file. */
    keyFile: '',
  },
  optimize: {
    /** Where `mlops optimize` writes the optimized model; --output overrides. */
    output: '',
    /** none: graph optimization only; dynamic: INT8 weights, activations quantized at run time; static: QDQ with calibrated ranges. */
    quantize: 'none',
    /** Rows for static quantization's ranges (any holdout format); empty: monitor.reference, else test.holdout. */
    calibration: '',
    calibrationRows: 256,
    /** minmax: each tensor's whole range; percentile: cut at `percentile` and its mirror, for outliers. */
    method: 'minmax',
    percentile: 99.999,
    /** Conv weights get a scale per output channel (static quantization). */
    perChannel: true,
    /** Node names or op types left in float. */
    exclude: [],
    /** ONNX Runtime's graph optimization level for the saved model. */
    level: 'extended',
    /** Metric -> comparison; empty: accuracy_drop (r2_drop for regression) <= 0.01. */
    gates: {},
    /** The side-by-side in-process benchmark: closed loop at this concurrency and rows a request, rounds alternating between the models. */
    bench: { concurrency: 1, batch: 1, durationSeconds: 3, rounds: 2 },
  },
  deploy: {
    /** A public key (PEM): deploy and rollback refuse (exit 5) a version it has not signed. Empty: no check. */
    verify: { key: '' },
  },
  explain: {
    /** Kernel SHAP coalitions per explanation; one explanation costs samples x backgroundRows model rows. */
    samples: 256,
    /** Reference rows the attributions are measured against (every row when there are fewer); `mlops build` bakes this many into the image for the explain route, 0 none. */
    backgroundRows: 100,
    /** Holdout rows `mlops explain` attributes (a seeded sample). */
    rows: 50,
    /** Shuffles per feature for permutation importance. */
    repeats: 5,
    /** The metric permutation importance watches; empty: accuracy (classification) or r2 (regression). */
    metric: '',
    seed: 7,
    /** The most rows one request to the server's explain route may ask for (each costs samples x backgroundRows model rows). */
    maxRows: 16,
    /** Occlusion (image-like inputs, the explain route): patches of this many positions along height and width are zeroed in turn. */
    patch: 8,
  },
  monitor: {
    /** The dataset (any holdout format) `mlops build` learns the reference profile from; empty: test.holdout. */
    reference: '',
    /** Bins per feature, at the reference's quantiles. */
    bins: 10,
    /** Rows in the server's sliding window, which `mlops monitor` judges by default. */
    windowRows: 10_000,
    /** Fewer live rows than this are too few to judge: a warning (exit 1 under --strict). */
    minRows: 500,
    /** A feature drifts at this PSI and above (Evidently's default). */
    featurePsi: 0.1,
    /** Metric -> comparison; empty: Evidently's dataset drift rule, {"drifted_share": "< 0.5"}. Quality metrics here gate `--labels`. */
    gates: {},
    /** Metric -> the most live quality (`--labels`) may fall behind the version's own test metrics. */
    maxDrop: {},
  },
  bench: {
    /** Closed-loop runs, one per concurrency (clients sending back to back). */
    concurrency: [1, 8, 32],
    /** Open-loop runs, one per arrival rate in requests a second; none by default. */
    rates: [],
    /** Rows per request; a run per value. */
    batch: [1],
    durationSeconds: 10,
    warmupSeconds: 2,
    /** Load generator threads for HTTP targets. */
    workers: 1,
    /** Seed for the random inputs. */
    seed: 1,
    /** Metric -> comparison, checked on every run, e.g. {"p95_ms": "<= 20"}. */
    gates: {},
    /** With --baseline: how much worse than the baseline a run may be, relatively, on these metrics. */
    regression: { tolerance: 0.1, metrics: ['p95_ms', 'throughput_rps'] },
  },
};

/** Each target type's defaults; a target in config is merged over its type's. */
export const TARGET_DEFAULTS: { [K in TargetConfig['type']]: Extract<TargetConfig, { type: K }> } = {
  local: {
    type: 'local',
    host: '127.0.0.1',
    port: 8080,
    grpcPort: 8081,
    containerName: '',
    restart: 'unless-stopped',
    memory: '',
    cpus: 0,
    readyTimeoutSeconds: 30,
  },
  kubernetes: {
    type: 'kubernetes',
    context: '',
    namespace: 'default',
    name: '',
    port: 80,
    resources: { requests: { cpu: '250m', memory: '256Mi' }, limits: { cpu: '1', memory: '512Mi' } },
    autoscaling: { minReplicas: 2, maxReplicas: 10, cpuTargetPercent: 70 },
    minAvailable: 1,
    serviceType: 'ClusterIP',
    rolloutTimeoutSeconds: 300,
    preStopSeconds: 5,
    serviceAccountName: '',
    imagePullSecrets: [],
  },
  cloudrun: {
    type: 'cloudrun',
    project: '',
    region: '',
    service: '',
    concurrency: 80,
    cpu: '1',
    memory: '512Mi',
    minInstances: 0,
    maxInstances: 10,
    canary: [100],
    allowUnauthenticated: false,
    readyTimeoutSeconds: 300,
  },
  kserve: {
    type: 'kserve',
    context: '',
    namespace: 'default',
    name: '',
    deploymentMode: 'Knative',
    resources: { requests: { cpu: '250m', memory: '256Mi' }, limits: { cpu: '1', memory: '512Mi' } },
    minReplicas: 1,
    maxReplicas: 10,
    canary: [100],
    readyTimeoutSeconds: 600,
    serviceAccountName: '',
    imagePullSecrets: [],
  },
  sagemaker: {
    type: 'sagemaker',
    region: '',
    executionRoleArn: '',
    endpoint: '',
    mode: 'realtime',
    instanceType: 'ml.m5.large',
    instanceCount: 1,
    serverless: { memorySizeMb: 2048, maxConcurrency: 10, provisionedConcurrency: 0 },
    canary: [100],
    waitIntervalSeconds: 300,
    alarms: [],
    readyTimeoutSeconds: 1800,
  },
  lambda: {
    type: 'lambda',
    region: '',
    roleArn: '',
    function: '',
    alias: 'live',
    architecture: 'x86_64',
    memorySizeMb: 2048,
    ephemeralStorageMb: 512,
    timeoutSeconds: 30,
    provisionedConcurrency: 0,
    canary: [100],
    waitIntervalSeconds: 300,
    alarms: [],
    functionUrl: 'AWS_IAM',
    readyTimeoutSeconds: 900,
  },
  azureml: {
    type: 'azureml',
    subscriptionId: '',
    resourceGroup: '',
    location: '',
    armEndpoint: 'https://management.azure.com',
    workspace: '',
    endpoint: '',
    authMode: 'key',
    instanceType: 'Standard_DS3_v2',
    instanceCount: 1,
    requestTimeoutMs: 5000,
    maxConcurrentRequestsPerInstance: 1,
    probe: { initialDelaySeconds: 10, periodSeconds: 10, timeoutSeconds: 2, failureThreshold: 30 },
    mirror: 0,
    canary: [100],
    waitIntervalSeconds: 300,
    readyTimeoutSeconds: 1800,
  },
  containerapp: {
    type: 'containerapp',
    subscriptionId: '',
    resourceGroup: '',
    location: '',
    armEndpoint: 'https://management.azure.com',
    environment: '',
    app: '',
    cpu: 0.5,
    memory: '1Gi',
    minReplicas: 0,
    maxReplicas: 10,
    concurrentRequests: 10,
    external: true,
    transport: 'auto',
    registryIdentity: '',
    env: {},
    secretEnv: {},
    canary: [100],
    waitIntervalSeconds: 60,
    readyTimeoutSeconds: 900,
  },
  vertex: {
    type: 'vertex',
    project: '',
    region: '',
    endpoint: '',
    machineType: 'n1-standard-2',
    minReplicas: 1,
    maxReplicas: 3,
    canary: [100],
    serviceAccount: '',
    readyTimeoutSeconds: 1800,
  },
};
