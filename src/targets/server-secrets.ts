/**
 * Where a deployed server finds its token file and certificates inside the container, whatever
 * the platform mounts them from (a bind mount, a Kubernetes Secret, Secret Manager), and the
 * environment that points the server at them. Values never travel in a manifest or command line.
 */
export const SECRET_MOUNT = {
  authDir: '/run/secrets/mlops/auth',
  tokens: '/run/secrets/mlops/auth/tokens',
  tlsDir: '/run/secrets/mlops/tls',
  cert: '/run/secrets/mlops/tls/tls.crt',
  key: '/run/secrets/mlops/tls/tls.key',
  clientCa: '/run/secrets/mlops/tls/ca.crt',
} as const;

/** The server's environment for the secrets a target mounts. */
export function secretEnv(mounted: { auth: boolean; tls: boolean; clientCa: boolean }): Record<string, string> {
  return {
    ...(mounted.auth ? { MLOPS_AUTH_TOKEN_FILE: SECRET_MOUNT.tokens } : {}),
    ...(mounted.tls ? { MLOPS_TLS_CERT: SECRET_MOUNT.cert, MLOPS_TLS_KEY: SECRET_MOUNT.key } : {}),
    ...(mounted.tls && mounted.clientCa ? { MLOPS_TLS_CLIENT_CA: SECRET_MOUNT.clientCa } : {}),
  };
}
