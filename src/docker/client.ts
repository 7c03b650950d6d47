import Docker from 'dockerode';
import { environmentError } from '../errors.js';

export interface DockerEndpoint {
  docker: Docker;
  /** Where the engine was looked for, for error messages. */
  description: string;
}

/** The engine at DOCKER_HOST, or the default socket. */
export function dockerEndpoint(env: NodeJS.ProcessEnv): DockerEndpoint {
  const host = env.DOCKER_HOST;
  if (!host) return { docker: new Docker({ socketPath: '/var/run/docker.sock' }), description: 'unix:///var/run/docker.sock' };
  if (host.startsWith('unix://')) return { docker: new Docker({ socketPath: host.slice('unix://'.length) }), description: host };
  const url = new URL(host.replace(/^tcp:/, 'http:'));
  return { docker: new Docker({ host: url.hostname, port: Number(url.port || 2375), protocol: 'http' }), description: host };
}

/** Connects and pings, or fails with a one-line message naming the socket and how to start an engine. */
export async function connectDocker(env: NodeJS.ProcessEnv): Promise<Docker> {
  const { docker, description } = dockerEndpoint(env);
  try {
    await docker.ping();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw environmentError(
      `cannot reach the Docker engine at ${description}${code ? ` (${code})` : ''}`,
      'start an engine (`sudo systemctl start docker`, or `dockerd &` as root) or point DOCKER_HOST at one',
      undefined,
      error,
    );
  }
  return docker;
}

/** The last lines of an engine's or tool's output, for error details. */
export function tail(text: string, lines = 12): string {
  return text
    .trimEnd()
    .split('\n')
    .slice(-lines)
    .map((l) => `  ${l}`)
    .join('\n');
}
