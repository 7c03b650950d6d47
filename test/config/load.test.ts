import { readFile, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULTS, MODEL_ENTRY_DEFAULTS, TARGET_DEFAULTS } from '../../src/config/defaults.js';
import { loadConfig, applyDefaults, validateConfig } from '../../src/config/load.js';
import { configReference, exampleConfig, schemaDefaults, withReference } from '../../src/config/generate.js';
import { isMlopsError } from '../../src/errors.js';
import { ROOT, lines, runCli, withTempDir } from '../helpers.js';

const formats: [string, string][] = [
  ['mlops.config.json', JSON.stringify({ model: { name: 'from-json' } })],
  ['mlops.config.yaml', 'model:\n  name: from-yaml\n'],
  ['mlops.config.js', 'export default { model: { name: "from-js" } };\n'],
  ['mlops.config.ts', 'const name: string = "from-ts";\nexport default { model: { name } };\n'],
  ['.mlopsrc', '{"model": {"name": "from-rc"}}'],
  ['package.json', JSON.stringify({ name: 'x', mlops: { model: { name: 'from-package' } } })],
];

describe('config loading', () => {
  for (const [file, content] of formats) {
    it(`finds ${file}`, async () => {
      await withTempDir(async (dir) => {
        await writeFile(path.join(dir, file), content);
        const loaded = await loadConfig({ cwd: dir });
        expect(loaded.filepath).toBe(path.join(dir, file));
        expect(loaded.config.model.name).toMatch(/^from-/);
        expect(loaded.config.server.port).toBe(DEFAULTS.server.port);
      });
    });
  }

  it('applies defaults when there is no config', async () => {
    await withTempDir(async (dir) => {
      const loaded = await loadConfig({ cwd: dir });
      expect(loaded.filepath).toBeNull();
      expect(loaded.config).toEqual(DEFAULTS);
    });
  });

  it('resolves an explicit --config path and keeps nested defaults', async () => {
    await withTempDir(async (dir) => {
      await mkdir(path.join(dir, 'conf'));
      await writeFile(path.join(dir, 'conf', 'prod.yaml'), 'server:\n  batching:\n    maxBatchSize: 8\n');
      const loaded = await loadConfig({ cwd: dir, configPath: 'conf/prod.yaml' });
      expect(loaded.baseDir).toBe(path.join(dir, 'conf'));
      expect(loaded.config.server.batching).toEqual({ ...DEFAULTS.server.batching, maxBatchSize: 8 });
    });
  });

  it('reports every problem at once, with its field path', async () => {
    await withTempDir(async (dir) => {
      await writeFile(
        path.join(dir, 'mlops.config.json'),
        JSON.stringify({ server: { port: 'eighty', prot: 1 }, test: { gates: { accuracy: 'high' } }, model: { name: 'Bad Name' } }),
      );
      const error = await loadConfig({ cwd: dir }).catch((e) => e);
      expect(isMlopsError(error) && error.exitCode).toBe(2);
      expect(error.message).toBe('mlops.config.json has 4 problems:');
      expect(error.details).toContain('server.port: expected a port from 0 to 65535');
      expect(error.details).toContain('server.prot: unknown field');
      expect(error.details).toContain('test.gates.accuracy: expected a comparison like ">= 0.9"');
      expect(error.details).toContain('model.name: expected lowercase letters');
    });
  });

  it('exits 2 through the CLI with the problems on stderr and nothing on stdout', async () => {
    await withTempDir(async (dir) => {
      await writeFile(path.join(dir, 'mlops.config.json'), JSON.stringify({ test: { gates: { accuracy: '>= high' } } }));
      const { code, stdout, stderr } = await runCli(['inspect'], { cwd: dir });
      expect(code).toBe(2);
      expect(stdout).toBe('');
      expect(lines(stderr)[0]).toBe('error: mlops.config.json: test.gates.accuracy: expected a comparison like ">= 0.9"');
    });
  });

  it('names the file on a syntax error', async () => {
    await withTempDir(async (dir) => {
      await writeFile(path.join(dir, 'mlops.config.json'), '{"model": {"name": "x",}}');
      const { code, stderr } = await runCli(['inspect'], { cwd: dir });
      expect(code).toBe(2);
      expect(lines(stderr)[0]).toBe('error: could not read mlops.config.json line 1, column 24: Expected double-quoted property name');
    });
  });

  it('says so when --config names a missing file', async () => {
    const { code, stderr } = await runCli(['--config', 'nope.json', 'inspect']);
    expect(code).toBe(2);
    expect(lines(stderr)[0]).toBe('error: config file not found: nope.json');
  });

  it('mlops.config.example.json is valid and documents every default', async () => {
    const example = JSON.parse(await readFile(path.join(ROOT, 'mlops.config.example.json'), 'utf8'));
    const loaded = await loadConfig({ cwd: ROOT, configPath: 'mlops.config.example.json' });
    expect(loaded.config).toEqual(applyDefaults({}));
    // Every field has a "//field" comment beside it.
    const undocumented: string[] = [];
    const walk = (node: Record<string, unknown>, at: string) => {
      for (const [key, value] of Object.entries(node)) {
        if (key.startsWith('//')) continue;
        if (value && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).some((k) => !k.startsWith('//'))) {
          walk(value as Record<string, unknown>, `${at}${key}.`);
        } else if (!(`//${key}` in node)) undocumented.push(at + key);
      }
    };
    walk(example, '');
    expect(undocumented).toEqual([]);
  });

  it('mlops.config.example.json, the reference in docs/configuration.md and the defaults are what the schema writes', async () => {
    const stale = 'differs from what src/config/schema.ts writes: run `npm run config-files`';
    expect(await readFile(path.join(ROOT, 'mlops.config.example.json'), 'utf8'), `mlops.config.example.json ${stale}`).toBe(exampleConfig());
    const page = await readFile(path.join(ROOT, 'docs/configuration.md'), 'utf8');
    expect(page, `docs/configuration.md ${stale}`).toContain(configReference());
    expect(page, `docs/configuration.md ${stale}`).toBe(withReference(page));
    // Values, not text: Prettier may lay the file out as it likes.
    const fromSchema = schemaDefaults();
    expect(DEFAULTS, `src/config/default-values.ts ${stale}`).toStrictEqual(fromSchema.DEFAULTS);
    expect(TARGET_DEFAULTS, `src/config/default-values.ts ${stale}`).toStrictEqual(fromSchema.TARGET_DEFAULTS);
    expect(MODEL_ENTRY_DEFAULTS, `src/config/default-values.ts ${stale}`).toStrictEqual(fromSchema.MODEL_ENTRY_DEFAULTS);
  });
});

describe('targets in config', () => {
  it('the example targets, uncommented, are valid and take their type defaults', async () => {
    const example = JSON.parse(await readFile(path.join(ROOT, 'mlops.config.example.json'), 'utf8'));
    const targets = Object.fromEntries(Object.entries(example.targets).map(([k, v]) => [k.replace(/^\/\//, ''), v]));
    await withTempDir(async (dir) => {
      await writeFile(path.join(dir, 'mlops.config.json'), JSON.stringify({ targets: { ...targets, small: { type: 'local', port: 9000 } } }));
      const { config } = await loadConfig({ cwd: dir });
      expect(Object.keys(config.targets)).toEqual(['dev', 'staging', 'prod', 'kserve', 'sagemaker', 'vertex', 'lambda', 'azureml', 'containerapp', 'small']);
      expect(config.targets.sagemaker).toMatchObject({ type: 'sagemaker', mode: 'realtime', serverless: { memorySizeMb: 2048 } });
      expect(config.targets.lambda).toMatchObject({ type: 'lambda', alias: 'live', canary: [10, 100], reservedConcurrency: 100 });
      expect(config.targets.azureml).toMatchObject({ type: 'azureml', mirror: 10, probe: { failureThreshold: 30 } });
      expect(config.targets.containerapp).toMatchObject({ type: 'containerapp', minReplicas: 0, secretEnv: { MLOPS_AUTH_TOKENS: 'CI_MLOPS_TOKENS' } });
      expect(config.targets.small).toMatchObject({ type: 'local', port: 9000, host: '127.0.0.1', readyTimeoutSeconds: 30 });
      expect(config.targets.staging).toMatchObject({ type: 'kubernetes', autoscaling: { minReplicas: 2 } });
    });
  });

  it("the README's targets table: one row per target type, each example a valid target", async () => {
    const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## Deploy targets'), readme.indexOf('## Optimizing a model'));
    const rows = section.split('\n').filter((line) => /^\| `[a-z]+` \|/.test(line));
    const examples = rows.map((row) =>
      JSON.parse(
        row
          .split(' | ')
          .at(-1)!
          .replace(/^`|` \|$/g, '')
          .replaceAll('…', '00000000-1111-2222-3333-444444444444'),
      ),
    );
    expect(examples.map((e) => e.type).sort()).toEqual(Object.keys(TARGET_DEFAULTS).sort());
    for (const example of examples) expect(() => validateConfig({ targets: { t: example } }, 'README.md'), example.type).not.toThrow();
  });

  it('checks the managed targets: SageMaker traffic steps and names, KServe canary only in Knative mode', async () => {
    await withTempDir(async (dir) => {
      await writeFile(
        path.join(dir, 'mlops.config.json'),
        JSON.stringify({
          targets: {
            sm: {
              type: 'sagemaker',
              region: 'eu-west-1',
              executionRoleArn: 'arn:aws:iam::123456789012:role/x',
              canary: [10, 30, 100],
              serverless: { memorySizeMb: 1500 },
            },
            role: { type: 'sagemaker', region: 'eu-west-1', executionRoleArn: 'SageMakerRole' },
            ks: { type: 'kserve', deploymentMode: 'Standard', canary: [10, 100] },
          },
        }),
      );
      const error = await loadConfig({ cwd: dir }).catch((e) => e);
      expect(error.details).toContain(
        'targets.sm.canary: SageMaker shifts traffic all at once [100], in one canary step [p, 100], or in equal linear steps [p, 2p, ..., 100]',
      );
      expect(error.details).toContain('targets.sm.serverless.memorySizeMb: expected 1024, 2048, 3072, 4096, 5120 or 6144');
      expect(error.details).toContain('targets.role.executionRoleArn: expected an IAM role ARN like arn:aws:iam::123456789012:role/SageMakerExecution');
      expect(error.details).toContain('targets.ks.canary: KServe moves traffic in steps only in Knative mode; use [100] with deploymentMode Standard');
    });
  });

  it('reports a target with an unknown type or a missing required field', async () => {
    await withTempDir(async (dir) => {
      await writeFile(
        path.join(dir, 'mlops.config.json'),
        JSON.stringify({ targets: { a: { type: 'nomad' }, b: { type: 'cloudrun', region: 'x' }, c: { type: 'local', prot: 1 } } }),
      );
      const error = await loadConfig({ cwd: dir }).catch((e) => e);
      expect(error.details).toContain(
        'targets.a.type: expected "type": "local", "kubernetes", "cloudrun", "kserve", "sagemaker", "vertex", "lambda", "azureml" or "containerapp"',
      );
      expect(error.details).toContain('targets.b.project: required, and missing');
      expect(error.details).toContain('targets.c.prot: unknown field');
    });
  });
});
