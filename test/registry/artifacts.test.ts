/**
 * OCI artifacts on a registry that has the OCI 1.1 referrers API. Debian's docker-registry
 * (distribution 2.8) has not, and no registry that has it installs here, so this is a stand-in
 * speaking the distribution spec's endpoints for blobs, manifests and referrers; the tag-schema
 * path runs against the real registry in test/e2e/supply-chain.test.ts.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attachArtifact, fetchArtifact, listReferrers, manifestDescriptor, uploadBlob } from '../../src/registry/artifacts.js';
import { RegistryClient } from '../../src/registry/client.js';

const sha256 = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

/** Blobs and manifests in memory; manifests with a subject are indexed as the referrers API serves them. */
function referrersRegistry() {
  const blobs = new Map<string, Buffer>();
  const manifests = new Map<string, { body: Buffer; type: string }>();
  const tags = new Map<string, string>();
  const requests: string[] = [];
  const server = http.createServer((req, res) => void answer(req, res));
  async function answer(req: http.IncomingMessage, res: http.ServerResponse) {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const url = new URL(req.url!, 'http://x');
    requests.push(`${req.method} ${url.pathname}`);
    let m: RegExpExecArray | null;
    if ((m = /^\/v2\/(.+)\/blobs\/uploads\/$/.exec(url.pathname)) && req.method === 'POST') {
      res.writeHead(202, { location: `/v2/${m[1]}/blobs/uploads/u1` }).end();
    } else if (/\/blobs\/uploads\/u1$/.test(url.pathname) && req.method === 'PUT') {
      const digest = url.searchParams.get('digest')!;
      if (sha256(body) !== digest) return void res.writeHead(400).end();
      blobs.set(digest, body);
      res.writeHead(201).end();
    } else if ((m = /\/blobs\/(sha256:[0-9a-f]+)$/.exec(url.pathname))) {
      const blob = blobs.get(m[1]);
      if (!blob) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-length': blob.length }).end(req.method === 'HEAD' ? undefined : blob);
    } else if ((m = /\/manifests\/(.+)$/.exec(url.pathname)) && req.method === 'PUT') {
      const digest = sha256(body);
      manifests.set(digest, { body, type: req.headers['content-type']! });
      if (!m[1].startsWith('sha256:')) tags.set(m[1], digest);
      const subject = (JSON.parse(body.toString()) as { subject?: { digest: string } }).subject;
      res.writeHead(201, { 'docker-content-digest': digest, ...(subject ? { 'oci-subject': subject.digest } : {}) }).end();
    } else if ((m = /\/manifests\/(.+)$/.exec(url.pathname))) {
      const found = manifests.get(tags.get(m[1]) ?? m[1]);
      if (!found) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': found.type, 'docker-content-digest': sha256(found.body) }).end(found.body);
    } else if ((m = /\/referrers\/(sha256:[0-9a-f]+)$/.exec(url.pathname))) {
      const referrers = [...manifests.entries()]
        .map(([digest, { body: b, type }]) => ({ digest, type, size: b.length, doc: JSON.parse(b.toString()) }))
        .filter((e) => e.doc.subject?.digest === m![1])
        .map((e) => ({ mediaType: e.type, digest: e.digest, size: e.size, artifactType: e.doc.artifactType, annotations: e.doc.annotations }));
      res
        .writeHead(200, { 'content-type': 'application/vnd.oci.image.index.v1+json' })
        .end(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: referrers }));
    } else {
      res.writeHead(404).end();
    }
  }
  return { server, tags, requests };
}

describe('OCI artifacts through the referrers API', () => {
  const registry = referrersRegistry();
  let client: RegistryClient;

  beforeAll(async () => {
    await new Promise<void>((resolve) => registry.server.listen(0, '127.0.0.1', resolve));
    client = new RegistryClient(`127.0.0.1:${(registry.server.address() as AddressInfo).port}`, undefined);
  });
  afterAll(() => new Promise<void>((resolve) => registry.server.close(() => resolve())));

  it('attaches with a subject, adds no tags, and lists and fetches what refers to the image', async () => {
    const config = Buffer.from('{"architecture":"amd64","os":"linux"}');
    await uploadBlob(client, 'team/bc', config);
    const image = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
        layers: [],
      }),
    );
    await client.request('/v2/team/bc/manifests/1.0.0', {
      method: 'PUT',
      headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
      body: image,
    });
    const subject = (await manifestDescriptor(client, 'team/bc', '1.0.0'))!;
    expect(subject).toEqual({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256(image), size: image.length });

    const attached = await attachArtifact(client, 'team/bc', subject, {
      artifactType: 'application/vnd.cyclonedx+json',
      content: Buffer.from('{"bomFormat":"CycloneDX"}'),
      annotations: { a: 'b' },
      tagSuffix: 'sbom',
    });
    expect(attached.via).toBe('referrers-api');
    // The registry indexes it itself: no sha256-<hex> tags, no index written.
    expect([...registry.tags.keys()]).toEqual(['1.0.0']);
    const referrers = await listReferrers(client, 'team/bc', subject.digest);
    expect(referrers).toEqual([
      {
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        digest: attached.digest,
        size: expect.any(Number),
        artifactType: 'application/vnd.cyclonedx+json',
        annotations: { a: 'b' },
      },
    ]);
    const fetched = await fetchArtifact(client, 'team/bc', referrers[0]);
    expect(fetched).toEqual({ content: Buffer.from('{"bomFormat":"CycloneDX"}'), subject: subject.digest });
    expect(registry.requests).not.toContain(`GET /v2/team/bc/manifests/sha256-${subject.digest.slice(7)}`);
  });
});
