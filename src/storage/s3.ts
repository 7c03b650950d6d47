import type { S3Client } from '@aws-sdk/client-s3';
import type { Readable } from 'node:stream';
import { firstLine, networkFailure, type Failure, type Vendor } from './failures.js';
import { objectUri, type ObjectStore } from './object-store.js';
import { DEFAULT_PART_SIZE, PARTS_IN_FLIGHT, storeOver, type StoreOptions } from './store.js';

/** S3 refuses parts under 5 MiB (all but the last). */
const MIN_PART_SIZE = 5 * 1024 * 1024;

/**
 * The endpoint set in the environment, as the AWS SDK reads it (AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL,
 * unless AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is true). mlops passes it on itself so that it knows one is
 * set: a custom endpoint (s3rver, MinIO, LocalStack) gets path-style addressing, which they all serve and
 * which needs no wildcard DNS.
 */
export function s3Endpoint(env: NodeJS.ProcessEnv): string | undefined {
  if (/^true$/i.test(env.AWS_IGNORE_CONFIGURED_ENDPOINT_URLS ?? '')) return undefined;
  return env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || undefined;
}

const PERMISSIONS = { read: 's3:GetObject', write: 's3:PutObject', list: 's3:ListBucket', 'look up': 's3:GetObject', remove: 's3:DeleteObject' };

const AWS: Vendor = {
  name: 'AWS',
  listCommand: (location) => `aws s3 ls ${objectUri(location, location.key.slice(0, location.key.lastIndexOf('/') + 1))}`,
  credentialsHint:
    'the AWS SDK looks in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE and ~/.aws, SSO, then the instance or task role; `aws sts get-caller-identity` shows what it finds (docs/storage.md "Credentials")',
  permissionHint: (operation) =>
    `the identity \`aws sts get-caller-identity\` shows needs ${PERMISSIONS[operation]} on the bucket (its policy, the role's policy, or a KMS key's)`,
  endpointHint:
    'check the network; AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, when set, must name a running S3-compatible server (docs/storage.md "Local stand-ins")',
};

const NO_OBJECT = new Set(['NoSuchKey', 'NotFound']);
const DENIED = new Set(['AccessDenied', 'Forbidden', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'ExpiredToken', 'InvalidToken', 'AllAccessDisabled']);

export function s3Failure(error: unknown): Failure | undefined {
  const network = networkFailure(error);
  if (network) return { kind: 'unreachable', detail: network };
  if (!(error instanceof Error)) return undefined;
  const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  const detail = `${error.name}: ${firstLine(error)}`;
  if (error.name === 'CredentialsProviderError') return { kind: 'no-credentials', detail: firstLine(error) };
  if (/region is missing/i.test(error.message))
    return { kind: 'misconfigured', detail: 'no AWS region is set', hint: 'set AWS_REGION (any region: requests follow the bucket to its own)' };
  if (NO_OBJECT.has(error.name)) return { kind: 'no-object' };
  if (error.name === 'NoSuchBucket') return { kind: 'no-bucket' };
  if (error.name === 'InvalidRange' || status === 416) return { kind: 'bad-range' };
  if (DENIED.has(error.name) || status === 401 || status === 403) return { kind: 'denied', detail };
  if (status !== undefined) return { kind: 'service', detail: `${status} ${detail}` };
  return undefined;
}

/** s3:// through @aws-sdk/client-s3 and its default credential chain; writes are lib-storage multipart uploads. */
export function s3Store(env: NodeJS.ProcessEnv = process.env, options: StoreOptions = {}): ObjectStore {
  const partSize = Math.max(options.partSize ?? DEFAULT_PART_SIZE, MIN_PART_SIZE);
  let client: Promise<S3Client> | undefined;
  const s3 = () => (client ??= createClient(env, options));
  const sdk = () => import('@aws-sdk/client-s3');

  return storeOver({
    scheme: 's3',
    vendor: AWS,
    classify: s3Failure,
    async list({ bucket, key }) {
      const { paginateListObjectsV2 } = await sdk();
      const found: { key: string; size: number }[] = [];
      for await (const page of paginateListObjectsV2({ client: await s3(), pageSize: options.pageSize }, { Bucket: bucket, Prefix: key })) {
        for (const object of page.Contents ?? []) if (object.Key !== undefined) found.push({ key: object.Key, size: object.Size ?? 0 });
      }
      return found;
    },
    async size({ bucket, key }) {
      const { HeadObjectCommand, HeadBucketCommand } = await sdk();
      try {
        const head = await (await s3()).send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
        return head.ContentLength ?? 0;
      } catch (error) {
        if (s3Failure(error)?.kind !== 'no-object') throw error;
        // A HEAD's 404 has no body to say whether the key or the bucket is missing: ask about the bucket.
        await (await s3()).send(new HeadBucketCommand({ Bucket: bucket })).catch((bucketError: unknown) => {
          if (s3Failure(bucketError)?.kind === 'no-object') throw Object.assign(new Error(`no bucket ${bucket}`), { name: 'NoSuchBucket' });
        });
        return null;
      }
    },
    async open({ bucket, key }, range) {
      const { GetObjectCommand } = await sdk();
      const Range = range ? `bytes=${range.start}-${range.end - 1}` : undefined;
      const answer = await (await s3()).send(new GetObjectCommand({ Bucket: bucket, Key: key, Range }));
      // In Node the body is the response's IncomingMessage.
      return answer.Body as Readable;
    },
    async write({ bucket, key }, body, contentType) {
      const { Upload } = await import('@aws-sdk/lib-storage');
      const upload = new Upload({
        client: await s3(),
        params: { Bucket: bucket, Key: key, Body: body, ContentType: contentType },
        partSize,
        queueSize: PARTS_IN_FLIGHT,
        leavePartsOnError: false,
      });
      await upload.done();
    },
    async remove({ bucket, key }) {
      const { DeleteObjectCommand } = await sdk();
      // S3 answers 204 for a key that is not there.
      await (await s3()).send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    },
  });
}

async function createClient(env: NodeJS.ProcessEnv, options: StoreOptions): Promise<S3Client> {
  const { S3Client } = await import('@aws-sdk/client-s3');
  const endpoint = s3Endpoint(env);
  // The SDK's chain reads process.env; keys in `env` come first as they would there.
  const { AWS_ACCESS_KEY_ID: accessKeyId, AWS_SECRET_ACCESS_KEY: secretAccessKey, AWS_SESSION_TOKEN: sessionToken } = env;
  return new S3Client({
    endpoint,
    credentials: accessKeyId && secretAccessKey ? { accessKeyId, secretAccessKey, sessionToken } : undefined,
    forcePathStyle: endpoint !== undefined,
    // The SDK reads AWS_REGION and the profile's region itself; AWS_DEFAULT_REGION (the AWS CLI's) it does not.
    region: env.AWS_REGION || env.AWS_DEFAULT_REGION || undefined,
    // A bucket in another region than the one configured answers 301: follow it rather than fail.
    followRegionRedirects: true,
    maxAttempts: options.maxAttempts,
  });
}
