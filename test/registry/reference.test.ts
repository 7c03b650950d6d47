import { describe, expect, it } from 'vitest';
import { isLoopback, localName, parseReference } from '../../src/registry/reference.js';

describe('image references', () => {
  it('splits registry, repository, tag and digest as Docker does', () => {
    expect(parseReference('127.0.0.1:5000/team/bc:1.0.0')).toEqual({ registry: '127.0.0.1:5000', repository: 'team/bc', tag: '1.0.0', digest: undefined });
    expect(parseReference('registry.example.com/bc@sha256:abc')).toEqual({
      registry: 'registry.example.com',
      repository: 'bc',
      tag: undefined,
      digest: 'sha256:abc',
    });
    expect(parseReference('bc')).toMatchObject({ registry: 'docker.io', repository: 'library/bc' });
    expect(parseReference('team/bc:v2')).toMatchObject({ registry: 'docker.io', repository: 'team/bc', tag: 'v2' });
    expect(parseReference('localhost/bc')).toMatchObject({ registry: 'localhost', repository: 'bc' });
    expect(localName(parseReference('bc:1'))).toBe('bc');
    expect(() => parseReference('Team/BC')).toThrow(/not a valid image reference/);
  });

  it('treats only loopback registries as plain HTTP', () => {
    expect(isLoopback('127.0.0.1:5000')).toBe(true);
    expect(isLoopback('localhost:5000')).toBe(true);
    expect(isLoopback('registry.example.com')).toBe(false);
  });
});
