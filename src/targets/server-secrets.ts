import type { ClientSecurity } from '../protocol/client-security.js';
import { resolveClientSecurity } from '../protocol/client-security.js';
import { inputError } from '../errors.js';
import type { DeployContext } from './types.js';
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

/** The token and TLS Secrets of a Kubernetes or KServe target, as pod volumes, mounts, environment and probe scheme. */
export function kubeSecretMounts(target: { auth?: { secretName: string }; tls?: { secretName: string; clientCa?: boolean } }) {
  // 0440 with the pod's fsGroup: readable by the server's group only, as the restricted profile wants.
  const secretVolume = (name: string, secretName: string, keys: string[]) => ({
    name,
    secret: { secretName, defaultMode: 0o440, items: keys.map((key) => ({ key, path: key })) },
  });
  const volumes = [
    ...(target.auth ? [secretVolume('mlops-auth', target.auth.secretName, ['tokens'])] : []),
    ...(target.tls ? [secretVolume('mlops-tls', target.tls.secretName, ['tls.crt', 'tls.key', ...(target.tls.clientCa ? ['ca.crt'] : [])])] : []),
  ];
  const volumeMounts = [
    ...(target.auth ? [{ name: 'mlops-auth', mountPath: SECRET_MOUNT.authDir, readOnly: true }] : []),
    ...(target.tls ? [{ name: 'mlops-tls', mountPath: SECRET_MOUNT.tlsDir, readOnly: true }] : []),
  ];
  const env = Object.entries(secretEnv({ auth: Boolean(target.auth), tls: Boolean(target.tls), clientCa: Boolean(target.tls?.clientCa) })).map(
    ([name, value]) => ({ name, value }),
  );
  // The kubelet's probes: HTTPS when the server speaks TLS (it does not check the certificate, and the probe routes need no client certificate).
  const scheme = target.tls ? ('HTTPS' as const) : undefined;
  return { volumes, volumeMounts, env, scheme, fsGroup: volumes.length > 0 ? 10001 : undefined };
}

/**
 * What a remote target's smoke test presents, reaching the server through a port-forward on
 * loopback: the token (MLOPS_TOKEN) and client certificate (MLOPS_CLIENT_CERT/KEY) from the
 * environment, as CI holds them; the server's certificate is not checked on loopback. Checked
 * before a deploy starts: a server that will ask for what the smoke test lacks could never pass it.
 */
export function smokeSecurity(
  ctx: Pick<DeployContext, 'targetName' | 'env' | 'projectDir' | 'dryRun' | 'outputDir'>,
  target: { auth?: object; tls?: { clientCa?: boolean | string } },
  /** The variable that gives the server its tokens where the target has no `auth` (Container Apps' env): the smoke test needs one too. */
  tokensGiven?: string,
): { security: ClientSecurity; scheme: 'http' | 'https' } {
  // A dry run or --output sends no smoke request, so it needs no token or certificate.
  if (ctx.dryRun || ctx.outputDir) return { security: {}, scheme: 'http' };
  const targetName = ctx.targetName;
  const security = resolveClientSecurity({}, ctx.env, ctx.projectDir);
  if (tokensGiven && !security.token)
    throw inputError(
      `targets.${targetName}: the server is given ${tokensGiven}, so the smoke test needs a token it accepts`,
      'set MLOPS_TOKEN to one of those tokens in the deploying environment',
    );
  if (target.auth && !security.token)
    throw inputError(`targets.${targetName}.auth: the smoke test needs a token the server accepts`, 'set MLOPS_TOKEN to one of the tokens in the Secret');
  if (target.tls?.clientCa && !security.cert)
    throw inputError(
      `targets.${targetName}.tls.clientCa: the smoke test needs a client certificate`,
      'set MLOPS_CLIENT_CERT and MLOPS_CLIENT_KEY to a certificate the client CA issued',
    );
  return { security: { ...security, insecure: Boolean(target.tls) }, scheme: target.tls ? 'https' : 'http' };
}

/** Whether a server asks for tokens and speaks TLS, from its container's environment (as `mlops status` reports it). */
export function accessOf(env: string[]): { auth: 'bearer tokens' | 'off'; tls: 'mutual TLS' | 'TLS' | 'off' } {
  const has = (name: string) => env.some((e) => e.startsWith(`${name}=`) && e.length > name.length + 1);
  return {
    auth: has('MLOPS_AUTH_TOKEN_FILE') || has('MLOPS_AUTH_TOKENS') ? 'bearer tokens' : 'off',
    tls: has('MLOPS_TLS_CERT') ? (has('MLOPS_TLS_CLIENT_CA') ? 'mutual TLS' : 'TLS') : 'off',
  };
}
