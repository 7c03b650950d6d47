/**
 * Where things are inside every image mlops builds, and how it runs: the builders write it, the
 * server and the clients that open an image read it. A floor below all of them.
 */
/** Where an image of several models keeps them, and the file that lists them (MLOPS_MODEL_REPOSITORY). */
export const IMAGE_MODELS_DIR = '/app/models';
export const IMAGE_REPOSITORY_FILE = `${IMAGE_MODELS_DIR}/repository.json`;

/**
 * What every mlops image is besides its layers: one place, read by both builders (the Dockerfile is
 * rendered from it, the daemonless builder writes it into the image's config), so their images behave
 * the same. The server runs as uid 10001, never root.
 */
export const IMAGE_RUNTIME = {
  workdir: '/app',
  user: '10001:10001',
  stopSignal: 'SIGTERM',
  healthcheck: { command: ['node', '/app/healthcheck.mjs'], intervalSeconds: 3, timeoutSeconds: 3, startPeriodSeconds: 10, retries: 3 },
  entrypoint: ['node', '/app/server.mjs'],
} as const;
