/**
 * A local stand-in for Azure Resource Manager (no subscription is reachable here), over HTTPS as the
 * SDKs insist for bearer tokens. It keeps resources by path, records every request, and answers with
 * ARM's long-running-operation semantics: PUT is 201 with an Azure-AsyncOperation URL to poll,
 * PATCH and DELETE are 202 with a Location URL; each operation is InProgress once, then Succeeded
 * (or Failed, when a test scripted a failure for that path).
 */
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { makeCertificates } from '../certificates.js';

export interface ArmRequest {
  method: string;
  /** Path without the query, as sent. */
  path: string;
  apiVersion: string | null;
  body: unknown;
  headers: Record<string, string | string[] | undefined>;
}

interface Operation {
  polls: number;
  resourcePath: string;
  kind: 'put' | 'patch' | 'delete';
  failure?: { code: string; message: string };
}

type Action = (resourcePath: string, body: unknown, store: Map<string, Record<string, unknown>>) => { status?: number; body?: unknown };

export interface FakeArm {
  /** https://127.0.0.1:<port> */
  url: string;
  /** The CA that signed its certificate (PEM), for the SDK pipeline's tlsOptions. */
  ca: string;
  requests: ArmRequest[];
  /** Resources by lower-cased path. */
  resources: Map<string, Record<string, unknown>>;
  /** The next PUT or PATCH of a path matching this ends Failed with this error. */
  failNext(path: RegExp, error: { code: string; message: string }): void;
  /** A POST action (`.../listKeys`, `.../getLogs`, `.../deactivate`): answers by the last path segment. */
  onAction(name: string, action: Action): void;
  /** Fills in what the service would on each PUT or PATCH of a matching path (a scoring URI, a revision). */
  onPut(path: RegExp, fill: (resource: Record<string, unknown>, path: string) => void): void;
  /** Reads (GET) of a matching path are refused with this status from now on, as a lost role assignment would. */
  refuseReads(path: RegExp, status: number): void;
  /** Puts a resource in place, as if an earlier deploy had made it. */
  seed(path: string, resource: Record<string, unknown>): void;
  /** The recorded writes (PUT, PATCH, DELETE, POST), as "METHOD path" lines. */
  writes(): string[];
  close(): Promise<void>;
}

const isObject = (v: unknown): v is Record<string, unknown> => Boolean(v) && typeof v === 'object' && !Array.isArray(v);

/** RFC 7396 JSON merge patch: what ARM's PATCH does. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return patch;
  const out: Record<string, unknown> = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

export async function startFakeArm(): Promise<FakeArm> {
  const certs = makeCertificates();
  const resources = new Map<string, Record<string, unknown>>();
  const requests: ArmRequest[] = [];
  const operations = new Map<string, Operation>();
  const failures: { path: RegExp; error: { code: string; message: string } }[] = [];
  const actions = new Map<string, Action>();
  const fills: { path: RegExp; fill: (resource: Record<string, unknown>, path: string) => void }[] = [];
  const refused: { path: RegExp; status: number }[] = [];
  let nextOperation = 0;
  let base = '';

  const send = (res: ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}) => {
    const text = body === undefined ? '' : JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'x-ms-request-id': `req-${requests.length}`, ...headers });
    res.end(text);
  };
  const notFound = (res: ServerResponse, path: string) =>
    send(res, 404, { error: { code: 'ResourceNotFound', message: `The Resource '${path}' was not found.` } });
  const setState = (resource: Record<string, unknown> | undefined, state: string) => {
    if (resource && isObject(resource.properties)) resource.properties = { ...resource.properties, provisioningState: state };
  };
  const startOperation = (resourcePath: string, kind: Operation['kind'], apiVersion: string | null) => {
    const id = `op-${++nextOperation}`;
    const failure = kind === 'delete' ? undefined : failures.find((f) => f.path.test(resourcePath));
    if (failure) failures.splice(failures.indexOf(failure), 1);
    operations.set(id, { polls: 0, resourcePath, kind, failure: failure?.error });
    return `${base}/providers/Fake.Operations/operations/${id}?api-version=${apiVersion ?? ''}`;
  };

  const handle = (req: IncomingMessage, res: ServerResponse, raw: string) => {
    const url = new URL(req.url ?? '/', 'https://arm');
    const path = url.pathname;
    const key = path.toLowerCase();
    let body: unknown = undefined;
    if (raw) body = JSON.parse(raw);
    const method = req.method ?? 'GET';
    requests.push({ method, path, apiVersion: url.searchParams.get('api-version'), body, headers: req.headers });
    const apiVersion = url.searchParams.get('api-version');

    const operation = /\/operations\/(op-\d+)$/.exec(path);
    if (operation) {
      const op = operations.get(operation[1]);
      if (!op) return notFound(res, path);
      op.polls += 1;
      const resource = resources.get(op.resourcePath);
      if (op.polls === 1)
        return send(res, op.kind === 'put' ? 200 : 202, op.kind === 'put' ? { status: 'InProgress' } : undefined, {
          'retry-after': '0',
          ...(op.kind === 'put' ? {} : { location: `${base}${path}?api-version=${apiVersion}` }),
        });
      if (op.failure) {
        setState(resource, 'Failed');
        return send(res, 200, { status: 'Failed', error: op.failure });
      }
      if (op.kind === 'delete') {
        resources.delete(op.resourcePath);
        return send(res, 204);
      }
      setState(resource, 'Succeeded');
      if (op.kind === 'put') return send(res, 200, { status: 'Succeeded' });
      return send(res, 200, resource);
    }

    if (method === 'GET') {
      const refusal = refused.find((r) => r.path.test(key));
      if (refusal)
        return send(res, refusal.status, {
          error: { code: 'AuthorizationFailed', message: `The client does not have authorization to perform action 'read' over scope '${path}'.` },
        });
      const resource = resources.get(key);
      if (resource) return send(res, 200, resource);
      // A collection: the resources one segment below it.
      const children = [...resources.entries()].filter(([p]) => p.startsWith(`${key}/`) && !p.slice(key.length + 1).includes('/')).map(([, r]) => r);
      if (children.length > 0 || /\/(deployments|onlineendpoints|revisions|containerapps|versions)$/.test(key)) return send(res, 200, { value: children });
      return notFound(res, path);
    }
    if (method === 'PUT') {
      const existed = resources.has(key);
      const name = path.split('/').at(-1)!;
      const resource = { ...(body as Record<string, unknown>), id: path, name } as Record<string, unknown>;
      resources.set(key, resource);
      for (const f of fills) if (f.path.test(key)) f.fill(resource, key);
      // Environment versions are plain PUTs in ARM (no operation to poll).
      if (/\/environments\/[^/]+\/versions\/[^/]+$/.test(key)) return send(res, existed ? 200 : 201, resource);
      setState(resource, existed ? 'Updating' : 'Creating');
      return send(res, existed ? 200 : 201, resource, { 'azure-asyncoperation': startOperation(key, 'put', apiVersion), 'retry-after': '0' });
    }
    if (method === 'PATCH') {
      const existing = resources.get(key);
      if (!existing) return notFound(res, path);
      const patched = mergePatch(existing, body) as Record<string, unknown>;
      resources.set(key, patched);
      for (const f of fills) if (f.path.test(key)) f.fill(patched, key);
      setState(patched, 'Updating');
      return send(res, 202, undefined, { location: startOperation(key, 'patch', apiVersion), 'retry-after': '0' });
    }
    if (method === 'DELETE') {
      if (!resources.has(key)) return send(res, 204);
      return send(res, 202, undefined, { location: startOperation(key, 'delete', apiVersion), 'retry-after': '0' });
    }
    if (method === 'POST') {
      const segments = path.split('/');
      const action = actions.get(segments.at(-1)!.toLowerCase());
      const resourcePath = segments.slice(0, -1).join('/').toLowerCase();
      if (!action) return send(res, 400, { error: { code: 'NoSuchAction', message: `no action ${segments.at(-1)}` } });
      if (!resources.has(resourcePath)) return notFound(res, resourcePath);
      const answer = action(resourcePath, body, resources);
      return send(res, answer.status ?? 200, answer.body);
    }
    send(res, 405, { error: { code: 'MethodNotAllowed', message: method } });
  };

  const server = createServer({ cert: readFileSync(certs.serverCert), key: readFileSync(certs.serverKey) }, (req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (raw += c));
    req.on('end', () => {
      try {
        handle(req, res, raw);
      } catch (error) {
        send(res, 500, { error: { code: 'FakeArmError', message: String(error) } });
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: base,
    ca: readFileSync(certs.ca, 'utf8'),
    requests,
    resources,
    failNext: (path, error) => failures.push({ path, error }),
    onAction: (name, action) => actions.set(name.toLowerCase(), action),
    onPut: (path, fill) => fills.push({ path, fill }),
    refuseReads: (path, status) => refused.push({ path, status }),
    seed: (path, resource) => resources.set(path.toLowerCase(), { ...resource, id: path, name: path.split('/').at(-1) }),
    writes: () => requests.filter((r) => r.method !== 'GET').map((r) => `${r.method} ${r.path}`),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
