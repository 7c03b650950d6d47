import type Docker from 'dockerode';
import { environmentError, inputError } from '../errors.js';
import { resolveCredentials } from '../registry/credentials.js';
import { parseReference } from '../registry/reference.js';

/**
 * Pulls a pushed version onto this machine through the engine, with the same credentials `mlops push`
 * uses (MLOPS_REGISTRY_USERNAME/PASSWORD, Docker's config, ECR). A version the registry does not have is
 * the user's mistake (exit 2); a registry that refuses or cannot be reached is the environment's (exit 3).
 */
export async function pullImage(docker: Docker, reference: string, env: NodeJS.ProcessEnv, onSecret?: (secret: string) => void): Promise<void> {
  const { registry } = parseReference(reference);
  const credentials = await resolveCredentials(registry, env);
  if (credentials) onSecret?.(credentials.password);
  const authconfig = credentials ? { username: credentials.username, password: credentials.password, serveraddress: registry } : undefined;
  try {
    const stream = await docker.pull(reference, authconfig ? { authconfig } : {});
    await new Promise<void>((resolve, reject) => docker.modem.followProgress(stream, (error: Error | null) => (error ? reject(error) : resolve())));
  } catch (error) {
    const why = (error as Error).message;
    if (/manifest unknown|not found|404/i.test(why))
      throw inputError(
        `${reference} is neither on this machine nor in ${registry}`,
        'run `mlops versions` to see what was pushed, or `mlops build` and `mlops tag` it here',
      );
    if (/unauthorized|denied|401|403/i.test(why))
      throw environmentError(
        `${registry} refused to let this machine pull ${reference}: ${why}`,
        'set MLOPS_REGISTRY_USERNAME and MLOPS_REGISTRY_PASSWORD, or `docker login` to it',
      );
    throw environmentError(`pulling ${reference} failed: ${why}`, 'check that the registry is up and reachable from here');
  }
}
