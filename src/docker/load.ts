import type Docker from 'dockerode';
import { environmentError } from '../errors.js';

/** `docker load` of an archive stream (what `docker save` writes), through the Engine API. */
export async function loadArchive(docker: Docker, archive: NodeJS.ReadableStream): Promise<void> {
  const stream = await docker.loadImage(archive, { quiet: true });
  let failure: string | undefined;
  await new Promise<void>((resolve, reject) =>
    docker.modem.followProgress(
      stream,
      (error: Error | null) => (error ? reject(error) : resolve()),
      (event: { error?: string; errorDetail?: { message?: string } }) => {
        if (event.error) failure = event.errorDetail?.message ?? event.error;
      },
    ),
  ).catch((error: Error) => {
    failure = error.message;
  });
  if (failure)
    throw environmentError(
      `loading the image into the Docker engine failed: ${failure}`,
      'check the engine with `docker info`, or pass --output to write the image elsewhere',
    );
}
