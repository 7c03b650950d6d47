import { describe, expect, it } from 'vitest';
import { DEFAULTS, TARGET_DEFAULTS } from '../../src/config/defaults.js';
import { applyDefaults } from '../../src/config/normalize.js';
import { renderManifests } from '../../src/targets/kubernetes-manifests.js';
import { restrictedViolations } from './pod-security.js';
import { k8s, v2 } from './plan-context.js';

describe('kubernetes manifests', () => {
  it('are valid against the Kubernetes schemas and safe by default', () => {
    const m = renderManifests('bc', k8s, v2, applyDefaults({}));
    const deployment = m.deployment.toJSON();
    expect(deployment.spec.strategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } });
    const pod = deployment.spec.template.spec;
    const container = pod.containers[0];
    expect(container.image).toBe(v2.image);
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 10001 });
    expect(container.securityContext).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    expect(container.readinessProbe.httpGet).toEqual({ path: '/v2/health/ready', port: 'http' });
    expect(container.livenessProbe.httpGet).toEqual({ path: '/v2/health/live', port: 'http' });
    expect(container.resources).toEqual({ requests: { cpu: '250m', memory: '256Mi' }, limits: { cpu: '1', memory: '512Mi' } });
    // preStop (5 s) + the server's graceful shutdown (10 s) + 5 s to spare.
    expect(container.lifecycle.preStop.exec.command[0]).toBe('node');
    expect(pod.terminationGracePeriodSeconds).toBe(5 + DEFAULTS.server.shutdownTimeoutMs / 1000 + 5);
    expect(pod.template?.metadata ?? deployment.spec.template.metadata.labels['mlops.version']).toBe('1.1.0');
    expect(m.hpa.toJSON().spec).toMatchObject({
      minReplicas: 2,
      maxReplicas: 10,
      metrics: [{ resource: { name: 'cpu', target: { averageUtilization: 70 } } }],
    });
    // The HPA owns the scale: a replica count in the Deployment would undo it on every apply.
    expect(deployment.spec).not.toHaveProperty('replicas');
    expect(m.pdb.toJSON().spec).toEqual({ minAvailable: 1, selector: { matchLabels: { 'app.kubernetes.io/name': 'bc' } } });
    expect(m.service.toJSON().spec.ports).toEqual([
      { name: 'http', port: 80, targetPort: 'http' },
      { name: 'grpc', port: 8081, targetPort: 'grpc', appProtocol: 'grpc' },
    ]);
    expect(container.ports).toEqual([
      { name: 'http', containerPort: 8080 },
      { name: 'grpc', containerPort: 8081 },
    ]);
    expect(container.env).toContainEqual({ name: 'GRPC_PORT', value: '8081' });
  });

  it('pass Pod Security "restricted", carry the recommended labels, mount no API token, and take a ServiceAccount and pull secrets', () => {
    const pod = (m: ReturnType<typeof renderManifests>) => m.deployment.toJSON().spec.template.spec;
    expect(restrictedViolations(pod(renderManifests('bc', k8s, v2, applyDefaults({}))))).toEqual([]);
    // The check itself fails a pod with none of this.
    expect(restrictedViolations({ containers: [{ name: 'x' }] }).length).toBeGreaterThan(3);
    const labels = renderManifests('bc', k8s, v2, applyDefaults({})).deployment.toJSON().metadata.labels;
    expect(labels).toEqual({
      'app.kubernetes.io/name': 'bc',
      'app.kubernetes.io/instance': 'bc',
      'app.kubernetes.io/version': '1.1.0',
      'app.kubernetes.io/component': 'model-server',
      'app.kubernetes.io/part-of': 'bc',
      'app.kubernetes.io/managed-by': 'mlops',
    });
    expect(pod(renderManifests('bc', k8s, v2, applyDefaults({})))).toMatchObject({ automountServiceAccountToken: false });
    expect(pod(renderManifests('bc', k8s, v2, applyDefaults({})))).not.toHaveProperty('imagePullSecrets');
    const privateRegistry = pod(
      renderManifests('bc', { ...k8s, serviceAccountName: 'model-runner', imagePullSecrets: ['registry-creds'] }, v2, applyDefaults({})),
    );
    expect(privateRegistry).toMatchObject({
      serviceAccountName: 'model-runner',
      imagePullSecrets: [{ name: 'registry-creds' }],
      automountServiceAccountToken: false,
    });
  });

  it('refuse settings that break the schema or each other', () => {
    expect(() => renderManifests('bc', { ...k8s, autoscaling: { minReplicas: 5, maxReplicas: 2, cpuTargetPercent: 70 } }, v2, applyDefaults({}))).toThrow(
      /maxReplicas \(2\) is below minReplicas \(5\)/,
    );
    expect(() => renderManifests('bc', { ...k8s, autoscaling: { ...k8s.autoscaling, cpuTargetPercent: 'most' as never } }, v2, applyDefaults({}))).toThrow(
      /the rendered hpa is not valid Kubernetes: .*averageUtilization must be integer/,
    );
  });
});

describe('secrets wired the platform way (issue 23): never values in a manifest or command line', () => {
  it('kubernetes and KServe: the token and TLS Secrets mounted read-only with the server pointed at them, HTTPS probes, still Pod Security restricted', async () => {
    const secured = { ...k8s, auth: { secretName: 'bc-tokens' }, tls: { secretName: 'bc-tls', clientCa: true } };
    const manifests = renderManifests('bc', secured, v2, applyDefaults({}));
    const pod = manifests.deployment.toJSON().spec.template.spec;
    expect(restrictedViolations(pod)).toEqual([]);
    expect(pod.securityContext.fsGroup).toBe(10001);
    expect(pod.volumes).toEqual(
      expect.arrayContaining([
        { name: 'mlops-auth', secret: { secretName: 'bc-tokens', defaultMode: 0o440, items: [{ key: 'tokens', path: 'tokens' }] } },
        { name: 'mlops-tls', secret: { secretName: 'bc-tls', defaultMode: 0o440, items: ['tls.crt', 'tls.key', 'ca.crt'].map((key) => ({ key, path: key })) } },
      ]),
    );
    const container = pod.containers[0];
    expect(container.volumeMounts).toEqual(
      expect.arrayContaining([
        { name: 'mlops-auth', mountPath: '/run/secrets/mlops/auth', readOnly: true },
        { name: 'mlops-tls', mountPath: '/run/secrets/mlops/tls', readOnly: true },
      ]),
    );
    expect(container.env).toEqual(
      expect.arrayContaining([
        { name: 'MLOPS_AUTH_TOKEN_FILE', value: '/run/secrets/mlops/auth/tokens' },
        { name: 'MLOPS_TLS_CERT', value: '/run/secrets/mlops/tls/tls.crt' },
        { name: 'MLOPS_TLS_KEY', value: '/run/secrets/mlops/tls/tls.key' },
        { name: 'MLOPS_TLS_CLIENT_CA', value: '/run/secrets/mlops/tls/ca.crt' },
      ]),
    );
    for (const probe of ['readinessProbe', 'livenessProbe', 'startupProbe']) expect(container[probe].httpGet.scheme).toBe('HTTPS');
    const { renderInferenceService } = await import('../../src/targets/kserve-manifest.js');
    const isvc = renderInferenceService(
      'bc',
      { ...TARGET_DEFAULTS.kserve, namespace: 'ml', auth: { secretName: 'bc-tokens' }, tls: { secretName: 'bc-tls' } },
      v2,
      applyDefaults({}),
    ) as any;
    expect(isvc.spec.predictor.volumes.map((v: { name: string }) => v.name)).toEqual(['tmp', 'mlops-auth', 'mlops-tls']);
    expect(isvc.spec.predictor.containers[0].readinessProbe.httpGet.scheme).toBe('HTTPS');
  });

  it('kubernetes: a NetworkPolicy admits only the configured namespaces and labelled pods, valid against the schema; one that admits nobody is refused', () => {
    const m = renderManifests('bc', { ...k8s, networkPolicy: { namespaces: ['gateway'], podLabels: { role: 'client' } } }, v2, applyDefaults({}));
    expect(m.networkPolicy!.toJSON()).toMatchObject({
      kind: 'NetworkPolicy',
      spec: {
        podSelector: { matchLabels: { 'app.kubernetes.io/name': 'bc' } },
        policyTypes: ['Ingress'],
        ingress: [
          {
            from: [
              {
                namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: ['gateway'] }] },
                podSelector: { matchLabels: { role: 'client' } },
              },
            ],
            ports: [{ port: 'http' }, { port: 'grpc' }],
          },
        ],
      },
    });
    expect(() => renderManifests('bc', { ...k8s, networkPolicy: {} }, v2, applyDefaults({}))).toThrow(/networkPolicy admits nobody/);
  });
});
