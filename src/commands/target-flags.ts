import path from 'node:path';
import type { Config } from '../config/defaults.js';
import { inputError } from '../errors.js';
import { parseProtocol } from '../predict/predictor.js';
import type { ModelPlace, TargetOptions } from '../predict/target.js';
import { resolveClientSecurity, type ClientSecurityFiles } from '../protocol/client-security.js';

/** The flags that say where test, bench and explain run the model (with the client security flags, for a server). */
export interface TargetFlags extends ClientSecurityFiles {
  image?: string;
  url?: string;
  local?: boolean;
  model?: string;
  /** The model to use on a server that serves several (a Triton or KServe repository): wins over model.name. */
  modelName?: string;
  protocol?: string;
}

/** --token-file, --cacert, --cert and --key, and no other flag. */
export function securityFiles(flags: ClientSecurityFiles): ClientSecurityFiles {
  const { tokenFile, cacert, cert, key } = flags;
  return { tokenFile, cacert, cert, key };
}

/** --url: a server base over REST (http://, https://) or gRPC (grpc://, grpcs://). */
function serverUrl(given: string): URL {
  let url: URL;
  try {
    url = new URL(given);
  } catch {
    throw inputError(`--url ${given}: not a URL`, 'pass the server base, e.g. http://127.0.0.1:8080, or grpc://127.0.0.1:8081 (https:// and grpcs:// for TLS)');
  }
  if (!['http:', 'https:', 'grpc:', 'grpcs:'].includes(url.protocol)) throw inputError(`--url ${given}: expected http://, https://, grpc:// or grpcs://`);
  return url;
}

/**
 * Where the model runs, and which: --image, --url or --local (with none of them, `otherwise`: the last
 * build's image, or in-process), --protocol, the client security flags, --model and --model-name.
 * Each is checked before anything starts, in this order.
 */
export function targetOptions(
  flags: TargetFlags,
  at: { cwd: string; projectDir: string; config: Config; env: NodeJS.ProcessEnv; otherwise: 'image' | 'local' },
): TargetOptions {
  const chosen = [flags.image !== undefined, flags.url !== undefined, Boolean(flags.local)].filter(Boolean).length;
  if (chosen > 1) throw inputError('--image, --url and --local exclude each other', 'pick one place to run the model');
  const protocol = parseProtocol(flags.protocol);
  const security = resolveClientSecurity(flags, at.env, at.cwd);
  const local = Boolean(flags.local) || (at.otherwise === 'local' && chosen === 0);
  if (protocol && local) throw inputError('--protocol goes with --image or --url, not --local');
  const modelFile = flags.model ? path.resolve(at.cwd, flags.model) : path.resolve(at.projectDir, at.config.model.path);
  const where: ModelPlace = local
    ? { kind: 'local' }
    : flags.url !== undefined
      ? { kind: 'url', url: serverUrl(flags.url), protocol, security }
      : { kind: 'image', image: flags.image, protocol, security };
  return { where, modelFile, modelName: flags.modelName };
}
