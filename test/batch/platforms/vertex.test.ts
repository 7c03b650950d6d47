import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { TARGET_DEFAULTS, type VertexTarget } from '../../../src/config/defaults.js';
import type { BatchJob } from '../../../src/batch/platform.js';
import { predictionRequests, vertexBatch } from '../../../src/batch/platforms/vertex.js';
import { isMlopsError } from '../../../src/errors.js';
import { vertexAdapter } from '../../../src/targets/vertex.js';
import { scripted } from '../../scripted-cli.js';
import { planArgv, releases, targetContext } from '../../targets/target-context.js';

const run = promisify(execFile);
const [, v2] = releases('europe-west4-docker.pkg.dev/acme/team/bc');
const target: VertexTarget = { ...TARGET_DEFAULTS.vertex, project: 'acme', region: 'europe-west4' };
const job: BatchJob = {
  name: 'bc-a1b2c3',
  release: v2,
  input: 'gs://data/in/',
  output: 'gs://data/out/',
  shards: 1,
  format: 'jsonl',
  env: {},
  pollIntervalMs: 1,
};
const api = 'https://europe-west4-aiplatform.googleapis.com/v1';
const jobResource = 'projects/acme/locations/europe-west4/batchPredictionJobs/4242';
const TOKEN = 'ya29.secret-token';

/** Google Cloud in a script: gcloud for the model and the token, curl for the REST calls (their header files read as they run). */
function cloud(states: object[], options: { modelExists?: boolean } = {}) {
  let looked = -1;
  const headers: string[] = [];
  const script = scripted(async (line, args) => {
    if (line.includes('gcloud ai models describe')) return options.modelExists ? { stdout: '{"name": "m"}' } : { exitCode: 1, stderr: 'NOT_FOUND' };
    if (line.includes('print-access-token')) return { stdout: `${TOKEN}\n` };
    if (line.startsWith('curl')) {
      headers.push(await readFile(args[args.indexOf('--header') + 1].slice(1), 'utf8'));
      if (line.includes(' POST ') && line.endsWith('/batchPredictionJobs'))
        return { stdout: JSON.stringify({ name: jobResource, state: 'JOB_STATE_PENDING' }) };
      if (line.includes(' GET ')) return { stdout: JSON.stringify(states[Math.min(++looked, states.length - 1)]) };
    }
    return {};
  });
  return { ...script, headers };
}

describe('vertex batch platform: a BatchPredictionJob (gcloud and curl through the exec seam; no cloud account here)', () => {
  it('the job body: the uploaded model, GCS instances (a prefix read whole), JSON Lines predictions, dedicated resources', () => {
    const { batchPredictionJob, modelId } = predictionRequests(target, job, targetContext());
    expect(batchPredictionJob).toEqual({
      displayName: 'bc-a1b2c3',
      model: `projects/acme/locations/europe-west4/models/${modelId}`,
      inputConfig: { instancesFormat: 'jsonl', gcsSource: { uris: ['gs://data/in/*'] } },
      outputConfig: { predictionsFormat: 'jsonl', gcsDestination: { outputUriPrefix: 'gs://data/out/' } },
      dedicatedResources: { machineSpec: { machineType: 'n1-standard-4' }, startingReplicaCount: 1, maxReplicaCount: 4 },
      labels: { 'mlops-version': '1-1-0', 'managed-by': 'mlops', 'mlops-batch': 'bc-a1b2c3' },
    });
    const csv = predictionRequests(target, { ...job, input: 'gs://data/in/rows.csv' }, targetContext()).batchPredictionJob.inputConfig;
    expect(csv).toEqual({ instancesFormat: 'csv', gcsSource: { uris: ['gs://data/in/rows.csv'] } });
  });

  it('uses the model id a deploy of the same release uploads', async () => {
    const deployArgs = await planArgv((c) => vertexAdapter.deploy(target, v2, null, c));
    const upload = deployArgs.find((a) => a[1] === 'models' && a[2] === 'upload')!;
    expect(upload).toContain(`--model-id=${predictionRequests(target, job, targetContext()).modelId}`);
  });

  it('refuses what Vertex AI cannot do: CSV or Parquet predictions, S3', () => {
    const refused = (change: Partial<BatchJob>) => {
      try {
        predictionRequests(target, { ...job, ...change }, targetContext());
        return 'accepted';
      } catch (error) {
        return isMlopsError(error) ? `exit ${error.exitCode}: ${error.message}` : String(error);
      }
    };
    expect(refused({ format: 'csv' })).toMatch(/^exit 2: .*as JSON Lines, not csv/);
    expect(refused({ output: 's3://data/out/' })).toMatch(/^exit 2: .*s3:\/\/data\/out\/ is not a gs:\/\/ URI/);
  });

  it('uploads the model when missing, creates the job, polls it to SUCCEEDED; the token is in no command and no plan', async () => {
    const { runner, calls, inputs, headers } = cloud([
      { name: jobResource, state: 'JOB_STATE_RUNNING', completionStats: { successfulCount: '10' } },
      {
        name: jobResource,
        state: 'JOB_STATE_SUCCEEDED',
        completionStats: { successfulCount: '20' },
        outputInfo: { gcsOutputDirectory: 'gs://data/out/prediction-x' },
      },
    ]);
    const logs: string[] = [];
    const ctx = targetContext({ runner, logs });
    const outcome = await vertexBatch.run(target, job, ctx);
    expect(outcome).toMatchObject({
      status: 'completed',
      detail: { batchPredictionJob: jobResource, outputDirectory: 'gs://data/out/prediction-x', failedInstances: 0 },
    });
    expect(calls.map((c) => c.split(' ').slice(0, 4).join(' '))).toEqual([
      'gcloud ai models describe',
      'gcloud ai models upload',
      'gcloud auth print-access-token',
      'curl --silent --show-error --fail-with-body',
      'gcloud auth print-access-token',
      'curl --silent --show-error --fail-with-body',
      'gcloud auth print-access-token',
      'curl --silent --show-error --fail-with-body',
    ]);
    expect(calls[3]).toMatch(new RegExp(`--request POST .*--data-binary @- ${api}/projects/acme/locations/europe-west4/batchPredictionJobs$`));
    expect(calls[5]).toMatch(new RegExp(`--request GET --header @\\S+ ${api}/${jobResource}$`));
    expect(JSON.parse(inputs[0])).toEqual(predictionRequests(target, job, targetContext()).batchPredictionJob);
    expect(headers[0]).toBe(`Authorization: Bearer ${TOKEN}\n`);
    expect(JSON.stringify(ctx.exec.steps)).not.toContain(TOKEN);
    expect(calls.join('\n')).not.toContain(TOKEN);
    expect(logs).toEqual([
      'batch prediction job bc-a1b2c3: JOB_STATE_RUNNING (10 predicted, 0 failed)',
      'batch prediction job bc-a1b2c3: JOB_STATE_SUCCEEDED (20 predicted, 0 failed)',
    ]);
  });

  it("a failed job is an outcome naming Vertex AI's error, with its partial failures", async () => {
    const { runner } = cloud(
      [
        {
          name: jobResource,
          state: 'JOB_STATE_FAILED',
          error: { code: 3, message: 'The model container failed to start: predict route answered 415' },
          partialFailures: [{ message: 'instance 7: bad input' }],
        },
      ],
      { modelExists: true },
    );
    const outcome = await vertexBatch.run(target, job, targetContext({ runner }));
    expect(outcome).toMatchObject({
      status: 'failed',
      message: 'batch prediction job bc-a1b2c3 ended failed: The model container failed to start: predict route answered 415',
      logs: 'instance 7: bad input',
    });
    // Succeeded with failed instances is not a success.
    const partial = cloud([{ name: jobResource, state: 'JOB_STATE_SUCCEEDED', completionStats: { successfulCount: '9', failedCount: '1' } }], {
      modelExists: true,
    });
    expect(await vertexBatch.run(target, job, targetContext({ runner: partial.runner }))).toMatchObject({
      status: 'failed',
      message: expect.stringContaining('1 instances failed'),
    });
  });

  it('--dry-run records the upload, the create (its body) and one read, and sends nothing', async () => {
    const { runner, calls } = cloud([]);
    const ctx = targetContext({ runner, dryRun: true });
    expect(await vertexBatch.run(target, job, ctx)).toEqual({ status: 'planned' });
    expect(calls).toEqual([]);
    const steps = ctx.exec.steps;
    expect(steps.map((s) => s.command.split(' ').slice(0, 3).join(' '))).toEqual([
      'gcloud ai models',
      'gcloud ai models',
      'gcloud auth print-access-token',
      'curl --silent --show-error',
      'gcloud auth print-access-token',
      'curl --silent --show-error',
    ]);
    expect(JSON.parse(steps[3].input!)).toMatchObject({ displayName: 'bc-a1b2c3' });
    expect(steps[5].command).toContain(`${api}/projects/acme/locations/europe-west4/batchPredictionJobs/<id>`);
  });
});

/**
 * gcloud's own generated Vertex AI v1 client reads each body into its message classes (the API's
 * discovery schema): a field the API does not have, or a value of the wrong type, is named.
 */
const GCLOUD_LIB = '/usr/lib/google-cloud-sdk/lib';
const GCLOUD_PYTHON = '/usr/lib/google-cloud-sdk/platform/bundledpythonunix/bin/python3';
const haveSchema = existsSync(`${GCLOUD_LIB}/googlecloudsdk/generated_clients/apis/aiplatform/v1/aiplatform_v1_messages.py`) && existsSync(GCLOUD_PYTHON);
const CHECK = `
import sys, json
sys.path[:0] = ['${GCLOUD_LIB}', '${GCLOUD_LIB}/third_party']
from apitools.base.py import encoding
from googlecloudsdk.generated_clients.apis.aiplatform.v1 import aiplatform_v1_messages as m
def unknown(msg, where):
    out = [where + '.' + f for f in msg.all_unrecognized_fields()]
    for field in msg.all_fields():
        value = msg.get_assigned_value(field.name)
        for x in (value if isinstance(value, list) else [value]):
            if hasattr(x, 'all_unrecognized_fields'):
                out += unknown(x, where + '.' + field.name)
    return out
print(json.dumps(unknown(encoding.JsonToMessage(getattr(m, sys.argv[1]), open(sys.argv[2]).read()), sys.argv[1])))
`;

describe.skipIf(!haveSchema)(`the bodies fit Vertex AI's v1 schema${haveSchema ? '' : ' (skipped: the Google Cloud SDK is not installed)'}`, () => {
  it('names no unknown field in the upload and job bodies, and catches one that is', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'mlops-vertex-schema-'));
    try {
      await writeFile(path.join(dir, 'check.py'), CHECK);
      const check = async (message: string, body: unknown) => {
        await writeFile(path.join(dir, 'body.json'), JSON.stringify(body));
        const { stdout } = await run(GCLOUD_PYTHON, [path.join(dir, 'check.py'), message, path.join(dir, 'body.json')], { timeout: 60_000 });
        return JSON.parse(stdout) as string[];
      };
      const files = vertexBatch.plan({ ...target, serviceAccount: 'ml@acme.iam.gserviceaccount.com' }, job, targetContext());
      expect(files.map((f) => f.name)).toEqual(['bc-a1b2c3-model-upload.json', 'bc-a1b2c3-batch-prediction-job.json']);
      expect(await check('GoogleCloudAiplatformV1UploadModelRequest', JSON.parse(files[0].content))).toEqual([]);
      const body = JSON.parse(files[1].content);
      expect(await check('GoogleCloudAiplatformV1BatchPredictionJob', body)).toEqual([]);
      expect(await check('GoogleCloudAiplatformV1BatchPredictionJob', { ...body, inputConfig: { ...body.inputConfig, gcsUris: ['gs://x'] } })).toEqual([
        'GoogleCloudAiplatformV1BatchPredictionJob.inputConfig.gcsUris',
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
