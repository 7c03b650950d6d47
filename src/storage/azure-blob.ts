import type { BlobServiceClient, StoragePipelineOptions } from '@azure/storage-blob';
import { Readable } from 'node:stream';
import { firstLine, networkFailure, type Failure, type Vendor } from './failures.js';
import type { ObjectLocation, ObjectStore } from './object-store.js';
import { DEFAULT_PART_SIZE, PARTS_IN_FLIGHT, storeOver, type StoreOptions } from './store.js';

/** Azure's error codes (x-ms-error-code) for a principal that may not do what it asked. */
const DENIED = new Set([
  'AuthorizationFailure',
  'AuthorizationPermissionMismatch',
  'AuthenticationFailed',
  'AuthorizationSourceIPMismatch',
  'AuthorizationProtocolMismatch',
  'InsufficientAccountPermissions',
  'KeyBasedAuthenticationNotPermitted',
]);
/** @azure/identity's errors when no credential in DefaultAzureCredential's chain works. */
const NO_CREDENTIALS = new Set(['CredentialUnavailableError', 'AggregateAuthenticationError', 'AuthenticationRequiredError', 'AuthenticationError']);

const ROLES = {
  read: 'Storage Blob Data Reader',
  write: 'Storage Blob Data Contributor',
  list: 'Storage Blob Data Reader',
  'look up': 'Storage Blob Data Reader',
  remove: 'Storage Blob Data Contributor',
};

const AZURE: Vendor = {
  name: 'Azure',
  listCommand: ({ bucket, container, key }) =>
    `az storage blob list --auth-mode login --account-name ${bucket} --container-name ${container} --prefix '${key.slice(0, key.lastIndexOf('/') + 1)}' -o table`,
  credentialsHint:
    'set AZURE_STORAGE_CONNECTION_STRING, or sign in for DefaultAzureCredential: `az login`, AZURE_CLIENT_ID with AZURE_CLIENT_SECRET or a federated token, or a managed identity (docs/storage.md "Credentials")',
  permissionHint: (operation) =>
    `the signed-in principal needs the ${ROLES[operation]} role on the account or container (key-based access alone is not enough)`,
  endpointHint:
    'check the network; AZURE_STORAGE_CONNECTION_STRING or MLOPS_AZURE_BLOB_ENDPOINT, when set, must name a running blob service (docs/storage.md "Local stand-ins")',
};

/** The connection string names another account than the URI: reading the URI's account through it would read the wrong one. */
class AccountMismatch extends Error {
  override name = 'AccountMismatch';
}

export function azureFailure(error: unknown, customEndpoint: boolean): Failure | undefined {
  if (!(error instanceof Error)) return undefined;
  if (error instanceof AccountMismatch)
    return { kind: 'misconfigured', detail: error.message, hint: "unset AZURE_STORAGE_CONNECTION_STRING, or set it to the URI's account's" };
  // Before the network: a chain's aggregate error holds each credential's failure, some of them a metadata endpoint not answering.
  if (NO_CREDENTIALS.has(error.name)) return { kind: 'no-credentials', detail: firstLine(error) };
  if (/bearer token authentication is not permitted for non-tls/i.test(error.message))
    return {
      kind: 'misconfigured',
      detail: 'an http:// endpoint takes no Microsoft Entra token',
      hint: 'use an https:// endpoint, or a connection string with a key (AZURE_STORAGE_CONNECTION_STRING)',
    };
  const network = networkFailure(error);
  // The account's own host, <account>.blob.core.windows.net, resolves for every account there is.
  if (network === 'ENOTFOUND' && !customEndpoint)
    return {
      kind: 'misconfigured',
      detail: `no such storage account (${firstLine(error)})`,
      hint: 'check the account in the URI: `az storage account list -o table`',
    };
  if (network) return { kind: 'unreachable', detail: network };
  const { statusCode, code, details } = error as { statusCode?: number; code?: unknown; details?: { errorCode?: string } };
  const errorCode = details?.errorCode ?? (typeof code === 'string' ? code : undefined);
  const detail = `${statusCode ?? ''} ${errorCode ?? ''}: ${firstLine(error)}`.trim();
  if (errorCode === 'BlobNotFound') return { kind: 'no-object' };
  if (errorCode === 'ContainerNotFound') return { kind: 'no-bucket' };
  if (errorCode === 'InvalidRange' || statusCode === 416) return { kind: 'bad-range' };
  if ((errorCode && DENIED.has(errorCode)) || statusCode === 401 || statusCode === 403) return { kind: 'denied', detail };
  if (statusCode === 404) return { kind: 'no-object' };
  if (statusCode !== undefined) return { kind: 'service', detail };
  return undefined;
}

/**
 * The blob service URL for an account: MLOPS_AZURE_BLOB_ENDPOINT when set, with `{account}` in it replaced
 * by the account (a sovereign cloud, a private endpoint, azurite's http://127.0.0.1:10000/{account}),
 * else https://<account>.blob.core.windows.net.
 */
export function azureBlobEndpoint(account: string, env: NodeJS.ProcessEnv): string {
  const template = env.MLOPS_AZURE_BLOB_ENDPOINT;
  return template ? template.replaceAll('{account}', account) : `https://${account}.blob.core.windows.net`;
}

/**
 * az://account/container/key through @azure/storage-blob: with AZURE_STORAGE_CONNECTION_STRING when set
 * (a key or SAS; azurite's development account), else DefaultAzureCredential. Writes are block uploads
 * of partSize blocks.
 */
export function azureBlobStore(env: NodeJS.ProcessEnv = process.env, options: StoreOptions = {}): ObjectStore {
  const partSize = options.partSize ?? DEFAULT_PART_SIZE;
  const clients = new Map<string, Promise<BlobServiceClient>>();
  const customEndpoint = Boolean(env.AZURE_STORAGE_CONNECTION_STRING || env.MLOPS_AZURE_BLOB_ENDPOINT);
  const serviceFor = (account: string) => {
    let client = clients.get(account);
    if (!client) clients.set(account, (client = createClient(account, env, options)));
    return client;
  };
  const containerOf = async ({ bucket, container }: ObjectLocation) => (await serviceFor(bucket)).getContainerClient(container ?? '');
  const blobOf = async (location: ObjectLocation) => (await containerOf(location)).getBlockBlobClient(location.key);

  return storeOver({
    scheme: 'az',
    vendor: AZURE,
    classify: (error) => azureFailure(error, customEndpoint),
    async list(location) {
      const found: { key: string; size: number }[] = [];
      const pages = (await containerOf(location)).listBlobsFlat({ prefix: location.key || undefined }).byPage({ maxPageSize: options.pageSize });
      for await (const page of pages) {
        for (const blob of page.segment.blobItems) found.push({ key: blob.name, size: blob.properties.contentLength ?? 0 });
      }
      return found;
    },
    async size(location) {
      const blob = await blobOf(location);
      try {
        return (await blob.getProperties()).contentLength ?? 0;
      } catch (error) {
        // A HEAD's 404 names no code in a body: x-ms-error-code says BlobNotFound or ContainerNotFound.
        if (azureFailure(error, customEndpoint)?.kind === 'no-object') return null;
        throw error;
      }
    },
    async open(location, range) {
      const blob = await blobOf(location);
      const answer = range ? await blob.download(range.start, range.end - range.start) : await blob.download();
      if (!answer.readableStreamBody) throw new Error(`${location.key}: the download has no body`);
      return answer.readableStreamBody as Readable;
    },
    async write(location, body, contentType) {
      const blob = await blobOf(location);
      const blobHTTPHeaders = contentType ? { blobContentType: contentType } : undefined;
      if (Buffer.isBuffer(body)) {
        await blob.uploadData(body, { blockSize: partSize, maxSingleShotSize: partSize, concurrency: PARTS_IN_FLIGHT, blobHTTPHeaders });
      } else {
        await blob.uploadStream(body, partSize, PARTS_IN_FLIGHT, { blobHTTPHeaders });
      }
    },
    async remove(location) {
      await (await blobOf(location)).deleteIfExists();
    },
  });
}

async function createClient(account: string, env: NodeJS.ProcessEnv, options: StoreOptions): Promise<BlobServiceClient> {
  const { BlobServiceClient } = await import('@azure/storage-blob');
  const pipeline: StoragePipelineOptions = options.maxAttempts ? { retryOptions: { maxTries: options.maxAttempts } } : {};
  const connection = env.AZURE_STORAGE_CONNECTION_STRING;
  if (connection) {
    const client = BlobServiceClient.fromConnectionString(connection, pipeline);
    if (client.accountName !== account)
      throw new AccountMismatch(`AZURE_STORAGE_CONNECTION_STRING is for the account ${client.accountName}, the URI names ${account}`);
    return client;
  }
  const { DefaultAzureCredential } = await import('@azure/identity');
  return new BlobServiceClient(azureBlobEndpoint(account, env), new DefaultAzureCredential(), pipeline);
}
