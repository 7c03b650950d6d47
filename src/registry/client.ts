import { Readable } from 'node:stream';
import { environmentError } from '../errors.js';
import { MANIFEST_ACCEPT, sha256Digest } from '../oci/media.js';
import type { Credentials } from './credentials.js';
import { isLoopback } from './reference.js';

const MANIFEST_TYPES = MANIFEST_ACCEPT;

export interface Manifest {
  digest: string;
  mediaType: string;
  config: { digest: string };
  layers: { digest: string; size: number }[];
}

export interface RegistryRequest {
  method?: string;
  accept?: string;
  headers?: Record<string, string>;
  /** A stream's body is made by a function, so that a request sent again after a challenge sends it whole. */
  body?: Buffer | string | (() => Readable);
  /** The token scope asked for under a bearer challenge, e.g. repository:team/model:pull,push. */
  scope?: string;
  /** Aborts the request (a stalled upload). */
  signal?: AbortSignal;
}

export interface ImageConfigBlob {
  created?: string;
  config?: { Labels?: Record<string, string> };
}

/**
 * The registry's HTTP API (distribution spec v2): tags, manifests, blobs.
 * Answers basic and bearer-token challenges the way Docker does.
 */
export class RegistryClient {
  private readonly base: string;
  private authorization: string | undefined;

  constructor(
    readonly registry: string,
    private readonly credentials: Credentials | undefined,
  ) {
    const host = registry === 'docker.io' ? 'registry-1.docker.io' : registry;
    this.base = `${isLoopback(registry) ? 'http' : 'https'}://${host}`;
  }

  private async send(path: string, request: RegistryRequest): Promise<Response> {
    const headers: Record<string, string> = { ...request.headers };
    if (request.accept) headers.accept = request.accept;
    if (this.authorization) headers.authorization = this.authorization;
    try {
      const streamed = typeof request.body === 'function';
      const body = streamed ? (Readable.toWeb((request.body as () => Readable)()) as ReadableStream) : (request.body as Buffer | string | undefined);
      return await fetch(path.startsWith('http') ? path : this.base + path, {
        method: request.method ?? 'GET',
        headers,
        body,
        redirect: 'follow',
        // A blob's upload may take longer than a minute on a slow link; its progress is the server's to judge.
        signal: AbortSignal.any([AbortSignal.timeout(streamed ? 30 * 60_000 : 60_000), ...(request.signal ? [request.signal] : [])]),
        ...(streamed ? { duplex: 'half' } : {}),
      });
    } catch (error) {
      // Node reports a refused connection to a name with several addresses as an AggregateError of them.
      const outer = (error as { cause?: NodeJS.ErrnoException & { errors?: NodeJS.ErrnoException[] } }).cause;
      const cause = outer?.code ? outer : (outer?.errors?.[0] ?? outer);
      const why = cause?.code === 'ECONNREFUSED' ? 'connection refused' : (cause?.code ?? cause?.message ?? (error as Error).message);
      throw environmentError(
        `cannot reach registry ${this.registry}: ${why}`,
        'check that the registry is up and the repository name in image.repository',
        undefined,
        error,
      );
    }
  }

  /** A GET, answering one authentication challenge if the registry sends it. */
  get(path: string, accept?: string, scope?: string): Promise<Response> {
    return this.request(path, { accept, scope });
  }

  /** Any request (path, or an upload location the registry gave), answering one authentication challenge. */
  async request(path: string, request: RegistryRequest): Promise<Response> {
    const scope = request.scope;
    let res = await this.send(path, request);
    if (res.status !== 401) return res;
    const challenge = res.headers.get('www-authenticate') ?? '';
    await res.body?.cancel();
    if (!this.credentials && /^basic/i.test(challenge)) {
      throw environmentError(`registry ${this.registry} needs a login`, 'set MLOPS_REGISTRY_USERNAME and MLOPS_REGISTRY_PASSWORD, or `docker login` to it');
    }
    if (/^basic/i.test(challenge)) {
      this.authorization = `Basic ${Buffer.from(`${this.credentials!.username}:${this.credentials!.password}`).toString('base64')}`;
    } else if (/^bearer/i.test(challenge)) {
      this.authorization = `Bearer ${await this.token(challenge, scope)}`;
    } else {
      throw environmentError(`registry ${this.registry} answered 401 with an authentication scheme mlops does not know: ${challenge || '(none)'}`);
    }
    res = await this.send(path, request);
    if (res.status === 401 || res.status === 403) {
      await res.body?.cancel();
      throw environmentError(
        `registry ${this.registry} refused the login (HTTP ${res.status})`,
        'check the username and password (MLOPS_REGISTRY_USERNAME / MLOPS_REGISTRY_PASSWORD or `docker login`)',
      );
    }
    return res;
  }

  private async token(challenge: string, scope?: string): Promise<string> {
    const params = Object.fromEntries([...challenge.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (!params.realm) throw environmentError(`registry ${this.registry} sent a bearer challenge without a realm`);
    const url = new URL(params.realm);
    if (params.service) url.searchParams.set('service', params.service);
    if (scope ?? params.scope) url.searchParams.set('scope', scope ?? params.scope);
    const headers: Record<string, string> = {};
    if (this.credentials) headers.authorization = `Basic ${Buffer.from(`${this.credentials.username}:${this.credentials.password}`).toString('base64')}`;
    const res = await fetch(url, { headers, signal: AbortSignal.timeout(15_000) }).catch((error) => {
      throw environmentError(`cannot reach the token service of ${this.registry} at ${url.origin}: ${(error as Error).message}`);
    });
    if (!res.ok) throw environmentError(`registry ${this.registry} refused the login at its token service (HTTP ${res.status})`, 'check the credentials');
    const body = (await res.json()) as { token?: string; access_token?: string };
    const token = body.token ?? body.access_token;
    if (!token) throw environmentError(`the token service of ${this.registry} sent no token`);
    return token;
  }

  /** Checks that the registry answers and accepts the credentials. */
  async ping(): Promise<void> {
    const res = await this.get('/v2/');
    await res.body?.cancel();
    if (!res.ok) throw environmentError(`registry ${this.registry} answered HTTP ${res.status} to /v2/`);
  }

  /** Tags of a repository; [] when it does not exist yet. */
  async tags(repository: string): Promise<string[]> {
    const tags: string[] = [];
    let path: string | null = `/v2/${repository}/tags/list?n=1000`;
    while (path) {
      const res = await this.get(path, undefined, `repository:${repository}:pull`);
      if (res.status === 404) return [];
      if (!res.ok) throw environmentError(`registry ${this.registry}: listing tags of ${repository} failed (HTTP ${res.status})`);
      tags.push(...(((await res.json()) as { tags?: string[] | null }).tags ?? []));
      const link = res.headers.get('link');
      path = link ? (/<([^>]+)>/.exec(link)?.[1] ?? null) : null;
    }
    return tags;
  }

  async manifest(repository: string, reference: string): Promise<Manifest | null> {
    const res = await this.get(`/v2/${repository}/manifests/${reference}`, MANIFEST_TYPES, `repository:${repository}:pull`);
    if (res.status === 404) {
      await res.body?.cancel();
      return null;
    }
    if (!res.ok) throw environmentError(`registry ${this.registry}: reading manifest ${repository}:${reference} failed (HTTP ${res.status})`);
    const body = (await res.json()) as Manifest & { manifests?: { digest: string }[] };
    const digest = res.headers.get('docker-content-digest') ?? '';
    // An index (multi-platform image): describe its first manifest.
    if (body.manifests && !body.config) {
      const first = await this.manifest(repository, body.manifests[0].digest);
      return first ? { ...first, digest } : null;
    }
    return { ...body, digest, mediaType: body.mediaType ?? res.headers.get('content-type') ?? '' };
  }

  /** A manifest or index as the registry stores it: its bytes, media type and digest; null when there is none. */
  async rawManifest(repository: string, reference: string): Promise<{ bytes: Buffer; mediaType: string; digest: string } | null> {
    const res = await this.get(`/v2/${repository}/manifests/${reference}`, MANIFEST_TYPES, `repository:${repository}:pull`);
    if (res.status === 404) {
      await res.body?.cancel();
      return null;
    }
    if (!res.ok) throw environmentError(`registry ${this.registry}: reading manifest ${repository}:${reference} failed (HTTP ${res.status})`);
    const bytes = Buffer.from(await res.arrayBuffer());
    let mediaType: string | undefined;
    try {
      mediaType = (JSON.parse(bytes.toString('utf8')) as { mediaType?: string }).mediaType;
    } catch {
      throw environmentError(`registry ${this.registry}: manifest ${repository}:${reference} is not JSON`);
    }
    return { bytes, mediaType: mediaType ?? res.headers.get('content-type') ?? '', digest: res.headers.get('docker-content-digest') ?? sha256Digest(bytes) };
  }

  /** A blob's response, its body not yet read. */
  async blob(repository: string, digest: string): Promise<Response> {
    const res = await this.get(`/v2/${repository}/blobs/${digest}`, undefined, `repository:${repository}:pull`);
    if (!res.ok) {
      await res.body?.cancel();
      throw environmentError(`registry ${this.registry}: reading blob ${digest} of ${repository} failed (HTTP ${res.status})`);
    }
    return res;
  }

  async configBlob(repository: string, digest: string): Promise<ImageConfigBlob> {
    const res = await this.get(`/v2/${repository}/blobs/${digest}`, undefined, `repository:${repository}:pull`);
    if (!res.ok) throw environmentError(`registry ${this.registry}: reading blob ${digest} failed (HTTP ${res.status})`);
    return (await res.json()) as ImageConfigBlob;
  }
}
