import { Deployment } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { Service } from 'kubernetes-models/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { kubeSecretMounts } from './server-secrets.js';
import { stringify } from 'yaml';
import type { Config, KubernetesTarget } from '../config/defaults.js';
import { inputError } from '../errors.js';
import type { Release } from './types.js';
import { MODEL_SHA256_LABEL } from '../model/labels.js';

/** Label values: at most 63 characters of [A-Za-z0-9._-]. */
export const labelValue = (value: string) =>
  value
    .replace(/[^A-Za-z0-9._-]/g, '-')
    .slice(0, 63)
    .replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '');

export interface Manifests {
  deployment: Deployment;
  service: Service;
  hpa: HorizontalPodAutoscaler;
  pdb: PodDisruptionBudget;
  /** Only when the target asks for one (networkPolicy). */
  networkPolicy?: NetworkPolicy;
}

/**
 * The Deployment, Service, HorizontalPodAutoscaler and PodDisruptionBudget for
 * one release, validated against the Kubernetes schemas before anything runs.
 */
/** Kubernetes' recommended labels (app.kubernetes.io/*); `name` alone selects, since a selector never changes. */
export function recommendedLabels(name: string, release: Release): Record<string, string> {
  return {
    'app.kubernetes.io/name': name,
    'app.kubernetes.io/instance': name,
    'app.kubernetes.io/version': labelValue(release.version),
    'app.kubernetes.io/component': 'model-server',
    'app.kubernetes.io/part-of': labelValue(release.modelName || name),
    'app.kubernetes.io/managed-by': 'mlops',
  };
}

/** Pod Security "restricted": not root, RuntimeDefault seccomp; the image runs as 10001. */
export const POD_SECURITY_CONTEXT = { runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, seccompProfile: { type: 'RuntimeDefault' as const } };
/** No privilege escalation, no capabilities, a read-only root (the server writes only to /tmp, an emptyDir). */
export const CONTAINER_SECURITY_CONTEXT = { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } };

/** Who the pods run as: no API token mounted (the server needs none), and the registry's pull secrets. */
export function podIdentity(target: { serviceAccountName: string; imagePullSecrets: string[] }) {
  return {
    automountServiceAccountToken: false,
    ...(target.serviceAccountName ? { serviceAccountName: target.serviceAccountName } : {}),
    ...(target.imagePullSecrets.length > 0 ? { imagePullSecrets: target.imagePullSecrets.map((name) => ({ name })) } : {}),
  };
}

/** The model's container: its ports, probes on the health routes, the preStop pause, limits, a read-only root. */
function modelContainer(target: KubernetesTarget, release: Release, config: Config, secrets: ReturnType<typeof kubeSecretMounts>) {
  const containerPort = config.image.port;
  // gRPC beside REST when the image serves it: named `grpc` so meshes and ingresses speak HTTP/2 to it.
  const grpcPort = config.image.grpcPort;
  const probe = (path: string) => ({ httpGet: { path, port: 'http', ...(secrets.scheme ? { scheme: secrets.scheme } : {}) } });
  return {
    name: 'model',
    image: release.image,
    ports: [{ name: 'http', containerPort }, ...(grpcPort > 0 ? [{ name: 'grpc', containerPort: grpcPort }] : [])],
    env: [
      { name: 'PORT', value: String(containerPort) },
      { name: 'GRPC_PORT', value: String(grpcPort) },
      { name: 'MLOPS_SHUTDOWN_TIMEOUT_MS', value: String(config.server.shutdownTimeoutMs) },
      ...secrets.env,
    ],
    resources: { requests: { ...target.resources.requests }, limits: { ...target.resources.limits } },
    readinessProbe: { ...probe('/v2/health/ready'), periodSeconds: 5, failureThreshold: 3 },
    livenessProbe: { ...probe('/v2/health/live'), initialDelaySeconds: 10, periodSeconds: 10, failureThreshold: 3 },
    startupProbe: { ...probe('/v2/health/live'), periodSeconds: 2, failureThreshold: 30 },
    lifecycle:
      target.preStopSeconds > 0 ? { preStop: { exec: { command: ['node', '-e', `setTimeout(() => {}, ${target.preStopSeconds * 1000})`] } } } : undefined,
    securityContext: CONTAINER_SECURITY_CONTEXT,
    volumeMounts: [{ name: 'tmp', mountPath: '/tmp' }, ...secrets.volumeMounts],
  };
}

export function renderManifests(name: string, target: KubernetesTarget, release: Release, config: Config): Manifests {
  const selector = { 'app.kubernetes.io/name': name };
  const labels = recommendedLabels(name, release);
  const grpcPort = config.image.grpcPort;
  const shutdownSeconds = Math.ceil(config.server.shutdownTimeoutMs / 1000);
  const metadata = { name, namespace: target.namespace, labels };
  const secrets = kubeSecretMounts(target);
  const manifests: Manifests = {
    deployment: new Deployment({
      metadata: { ...metadata, annotations: { [MODEL_SHA256_LABEL]: release.modelSha256 ?? '', 'mlops.image': release.image } },
      spec: {
        // No `replicas`: the HPA owns the scale (from autoscaling.minReplicas up), and a count here would pull a
        // scaled-out Deployment back down on every apply, as the Kubernetes docs warn.
        revisionHistoryLimit: 10,
        selector: { matchLabels: selector },
        // Never fewer ready pods than wanted while a version rolls out.
        strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
        template: {
          metadata: { labels: { ...labels, 'mlops.version': labelValue(release.version) }, annotations: { [MODEL_SHA256_LABEL]: release.modelSha256 ?? '' } },
          spec: {
            // preStop lets endpoints drop the pod before the server stops; then the server's own graceful shutdown.
            terminationGracePeriodSeconds: target.preStopSeconds + shutdownSeconds + 5,
            securityContext: secrets.fsGroup ? { ...POD_SECURITY_CONTEXT, fsGroup: secrets.fsGroup } : POD_SECURITY_CONTEXT,
            ...podIdentity(target),
            containers: [modelContainer(target, release, config, secrets)],
            volumes: [{ name: 'tmp', emptyDir: {} }, ...secrets.volumes],
          },
        },
      },
    }),
    service: new Service({
      metadata,
      spec: {
        type: target.serviceType,
        selector,
        ports: [
          { name: 'http', port: target.port, targetPort: 'http' },
          ...(grpcPort > 0 ? [{ name: 'grpc', port: grpcPort, targetPort: 'grpc', appProtocol: 'grpc' }] : []),
        ],
      },
    }),
    hpa: new HorizontalPodAutoscaler({
      metadata,
      spec: {
        scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name },
        minReplicas: target.autoscaling.minReplicas,
        maxReplicas: target.autoscaling.maxReplicas,
        metrics: [{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: target.autoscaling.cpuTargetPercent } } }],
      },
    }),
    pdb: new PodDisruptionBudget({ metadata, spec: { minAvailable: target.minAvailable, selector: { matchLabels: selector } } }),
    ...(target.networkPolicy ? { networkPolicy: networkPolicy(metadata, selector, target.networkPolicy, grpcPort > 0) } : {}),
  };
  if (target.autoscaling.maxReplicas < target.autoscaling.minReplicas) {
    throw inputError(`targets.${name}.autoscaling: maxReplicas (${target.autoscaling.maxReplicas}) is below minReplicas (${target.autoscaling.minReplicas})`);
  }
  for (const [kind, manifest] of Object.entries(manifests) as [string, { validate(): void }][]) {
    try {
      manifest.validate();
    } catch (error) {
      throw inputError(`the rendered ${kind} is not valid Kubernetes: ${(error as Error).message}`, 'check the kubernetes target settings in config');
    }
  }
  return manifests;
}

/**
 * Only the listed namespaces and/or labelled pods reach the model's ports. The kubelet's probes come from
 * the node, which NetworkPolicy implementations let through, so readiness keeps working.
 */
function networkPolicy(
  metadata: { name: string; namespace: string; labels: Record<string, string> },
  selector: Record<string, string>,
  allowed: NonNullable<KubernetesTarget['networkPolicy']>,
  grpc: boolean,
): NetworkPolicy {
  const namespaces = allowed.namespaces ?? [];
  const podLabels = allowed.podLabels ?? {};
  if (namespaces.length === 0 && Object.keys(podLabels).length === 0) {
    throw inputError(`targets.${metadata.name}.networkPolicy admits nobody`, 'list namespaces and/or podLabels whose pods may call the model');
  }
  // One peer that needs both (namespace and labels) when both are given; either alone otherwise.
  const peer = {
    ...(namespaces.length > 0 ? { namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: namespaces }] } } : {}),
    ...(Object.keys(podLabels).length > 0 ? { podSelector: { matchLabels: podLabels } } : {}),
  };
  return new NetworkPolicy({
    metadata,
    spec: {
      podSelector: { matchLabels: selector },
      policyTypes: ['Ingress'],
      ingress: [{ from: [peer], ports: [{ port: 'http' }, ...(grpc ? [{ port: 'grpc' }] : [])] }],
    },
  });
}

/** One YAML stream, in the order kubectl should apply it. */
export function manifestsYaml(manifests: Manifests): string {
  return [manifests.deployment, manifests.service, manifests.hpa, manifests.pdb, ...(manifests.networkPolicy ? [manifests.networkPolicy] : [])]
    .map((m) => stringify(m.toJSON()))
    .join('---\n');
}
