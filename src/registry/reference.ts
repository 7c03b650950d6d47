import { inputError } from '../errors.js';

export interface ImageReference {
  /** Host[:port] of the registry; docker.io when the name has none. */
  registry: string;
  /** The repository path inside the registry, e.g. team/model (library/x on Docker Hub). */
  repository: string;
  tag?: string;
  digest?: string;
}

/** Docker's rule: the first path component is a registry when it has a dot or a colon, or is localhost. */
export function parseReference(reference: string): ImageReference {
  let rest = reference;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at !== -1) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  const slash = rest.indexOf('/');
  const first = slash === -1 ? '' : rest.slice(0, slash);
  const hasRegistry = first !== '' && (first.includes('.') || first.includes(':') || first === 'localhost');
  const registry = hasRegistry ? first : 'docker.io';
  let repository = hasRegistry ? rest.slice(slash + 1) : rest;
  if (!repository || !/^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$/.test(repository)) {
    throw inputError(`not a valid image reference: ${reference}`, 'use [registry/]repository[:tag], lowercase');
  }
  if (registry === 'docker.io' && !repository.includes('/')) repository = `library/${repository}`;
  return { registry, repository, tag, digest };
}

/** The name Docker uses locally for the repository (no docker.io/library prefix). */
export function localName(ref: ImageReference): string {
  if (ref.registry === 'docker.io') return ref.repository.replace(/^library\//, '');
  return `${ref.registry}/${ref.repository}`;
}

/** Registries on this machine speak plain HTTP, as Docker allows for them by default. */
export function isLoopback(registry: string): boolean {
  const host = registry.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}
