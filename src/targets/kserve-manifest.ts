import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { Ajv, type ValidateFunction } from 'ajv';
import type { Config, KServeTarget } from '../config/defaults.js';
import { inputError } from '../errors.js';
import { CONTAINER_SECURITY_CONTEXT, POD_SECURITY_CONTEXT, podIdentity, recommendedLabels } from './kubernetes-manifests.js';
import type { Release } from './types.js';
import { kubeSecretMounts } from './server-secrets.js';
import { MODEL_SHA256_LABEL } from '../model/labels.js';

/** KServe's InferenceService CRD schema (v1beta1), shipped in the package; see scripts/kserve-schema.js. */
const SCHEMA_FILE = fileURLToPath(new URL('../../templates/schemas/kserve-inferenceservice.schema.json.gz', import.meta.url));

export interface InferenceService {
  apiVersion: 'serving.kserve.io/v1beta1';
  kind: 'InferenceService';
  metadata: { name: string; namespace: string; labels: Record<string, string>; annotations: Record<string, string> };
  spec: { predictor: Record<string, unknown> & { canaryTrafficPercent?: number } };
}

/**
 * A custom predictor running our image. KServe reads the protocol of a custom container from its
 * PROTOCOL variable; v2 makes it route and probe as Open Inference Protocol. Knative allows one
 * port, so gRPC stays off.
 */
export function renderInferenceService(name: string, target: KServeTarget, release: Release, config: Config, canaryTrafficPercent?: number): InferenceService {
  const secrets = kubeSecretMounts(target);
  const port = config.image.port;
  if (target.maxReplicas < target.minReplicas)
    throw inputError(`targets.${name}: maxReplicas (${target.maxReplicas}) is below minReplicas (${target.minReplicas})`);
  const service: InferenceService = {
    apiVersion: 'serving.kserve.io/v1beta1',
    kind: 'InferenceService',
    metadata: {
      name,
      namespace: target.namespace,
      labels: recommendedLabels(name, release),
      annotations: {
        'serving.kserve.io/deploymentMode': target.deploymentMode,
        'mlops.version': release.version,
        'mlops.image': release.image,
        [MODEL_SHA256_LABEL]: release.modelSha256 ?? '',
      },
    },
    spec: {
      predictor: {
        minReplicas: target.minReplicas,
        maxReplicas: target.maxReplicas,
        ...(canaryTrafficPercent !== undefined && canaryTrafficPercent < 100 ? { canaryTrafficPercent } : {}),
        // As the kubernetes target's pods: Pod Security "restricted", a read-only root with /tmp writable.
        securityContext: secrets.fsGroup ? { ...POD_SECURITY_CONTEXT, fsGroup: secrets.fsGroup } : POD_SECURITY_CONTEXT,
        ...podIdentity(target),
        volumes: [{ name: 'tmp', emptyDir: {} }, ...secrets.volumes],
        containers: [
          {
            name: 'kserve-container',
            image: release.image,
            ports: [{ containerPort: port, protocol: 'TCP' }],
            env: [
              { name: 'PROTOCOL', value: 'v2' },
              { name: 'PORT', value: String(port) },
              { name: 'GRPC_PORT', value: '0' },
              { name: 'MLOPS_SHUTDOWN_TIMEOUT_MS', value: String(config.server.shutdownTimeoutMs) },
              ...secrets.env,
            ],
            resources: { requests: { ...target.resources.requests }, limits: { ...target.resources.limits } },
            readinessProbe: {
              httpGet: { path: '/v2/health/ready', port, ...(secrets.scheme ? { scheme: secrets.scheme } : {}) },
              periodSeconds: 5,
              failureThreshold: 3,
            },
            livenessProbe: {
              httpGet: { path: '/v2/health/live', port, ...(secrets.scheme ? { scheme: secrets.scheme } : {}) },
              initialDelaySeconds: 10,
              periodSeconds: 10,
              failureThreshold: 3,
            },
            securityContext: CONTAINER_SECURITY_CONTEXT,
            volumeMounts: [{ name: 'tmp', mountPath: '/tmp' }, ...secrets.volumeMounts],
          },
        ],
      },
    },
  };
  validateInferenceService(service);
  return service;
}

let validator: ValidateFunction | undefined;

/** Checks an InferenceService against the CRD's schema; a problem is a config error naming the field. */
export function validateInferenceService(service: unknown): void {
  // strict: false lets the x-kubernetes-* keywords through; formats (int32, int64) are Kubernetes' own.
  validator ??= new Ajv({ strict: false, allErrors: true, validateFormats: false }).compile(
    closed(JSON.parse(gunzipSync(readFileSync(SCHEMA_FILE)).toString('utf8'))) as object,
  );
  if (validator(service)) return;
  const problems = (validator.errors ?? [])
    .slice(0, 5)
    .map(
      (e) =>
        `${e.instancePath || '(top level)'} ${e.message}${e.params && 'additionalProperty' in e.params ? ` '${String(e.params.additionalProperty)}'` : ''}`,
    );
  throw inputError(`the rendered InferenceService is not valid against KServe's schema: ${problems.join('; ')}`, 'check the kserve target settings in config');
}

/**
 * The API server drops fields a CRD does not declare, so a misspelt one would vanish without a word;
 * like `kubectl apply --validate=strict`, unknown fields are refused instead.
 */
function closed(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(closed);
  if (!node || typeof node !== 'object') return node;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(node))
    out[key] = key === 'properties' ? Object.fromEntries(Object.entries(value as object).map(([k, v]) => [k, closed(v)])) : closed(value);
  if (out.properties && out.additionalProperties === undefined && !out['x-kubernetes-preserve-unknown-fields']) out.additionalProperties = false;
  return out;
}
