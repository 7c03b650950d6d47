/**
 * The CI workflow examples in templates/ (not a src/ module, so their tests sit at test/'s root beside
 * the docs' tests): the order of their mlops steps, and the jq program the retrain workflow runs.
 */
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { probeTool } from './tools.js';

const jq = probeTool('jq', 'apt-get install jq');

describe('the GitHub Actions template', () => {
  it('is valid YAML and runs build, test, bench, tag, push and deploy in that order', async () => {
    const { parse } = await import('yaml');
    const workflow = parse(await readFile(path.join(__dirname, '..', 'templates', 'github-actions.yml'), 'utf8'));
    // The release job, then the deploy job that needs it.
    expect(workflow.jobs['deploy-staging'].needs).toBe('release');
    const commands = [...workflow.jobs.release.steps, ...workflow.jobs['deploy-staging'].steps]
      .flatMap((s: { run?: string }) => (s.run ?? '').split('\n'))
      .map((l: string) => l.trim())
      .filter((r: string) => r.startsWith('mlops '));
    expect(commands.map((c: string) => c.split(' ')[1])).toEqual(['build', 'test', 'bench', 'tag', 'push', 'deploy']);
    // The push signs: the key arrives from a secret through env, never in the script's text.
    for (const file of ['github-actions.yml', 'monitor-and-retrain.yml']) {
      const flow = parse(await readFile(path.join(__dirname, '..', 'templates', file), 'utf8'));
      const push = Object.values(flow.jobs as Record<string, { steps: { run?: string; env?: Record<string, string> }[] }>)
        .flatMap((job) => job.steps)
        .find((s) => s.run?.startsWith('mlops push'));
      expect(push?.env?.MLOPS_SIGNING_KEY, file).toBe('${{ secrets.MLOPS_SIGNING_KEY }}');
    }
  });

  it('monitor-and-retrain: a scheduled drift and quality check, then on drift or a drop retrain, build, test against the serving version, bench, tag, push and deploy to staging', async () => {
    const { parse } = await import('yaml');
    const workflow = parse(await readFile(path.join(__dirname, '..', 'templates', 'monitor-and-retrain.yml'), 'utf8'));
    expect(workflow.on.schedule[0].cron).toMatch(/^\S+ \S+ \* \* \*$/);
    const runs = (job: { steps: { run?: string }[] }) =>
      job.steps
        .map((s) => s.run ?? '')
        .flatMap((r) => r.split('\n'))
        .map((l) => l.trim())
        .filter((l) => /^(\w+=\$\()?mlops /.test(l) || l.includes('$(mlops '));
    const watch = runs(workflow.jobs.watch);
    expect(watch).toEqual([
      expect.stringMatching(/^mlops monitor --target production --strict /),
      expect.stringMatching(/^mlops monitor --target production --labels labels\/labels\.csv --since 7d /),
    ]);
    expect(workflow.jobs.watch.outputs.drifted).toBe('${{ steps.drift.outputs.drifted }}');
    expect(workflow.jobs.watch.outputs.dropped).toBe('${{ steps.quality.outputs.dropped }}');
    // The quality check runs once labels were fetched, after the drift check.
    const watchSteps = workflow.jobs.watch.steps.map((s: { name?: string }) => s.name ?? '');
    expect(watchSteps.findIndex((n: string) => n.startsWith('Fetch labels'))).toBeLessThan(watchSteps.findIndex((n: string) => n.startsWith('Quality check')));
    expect(workflow.jobs.watch.steps.find((s: { id?: string }) => s.id === 'quality').if).toBe("hashFiles('labels/labels.csv') != ''");
    expect(workflow.jobs.retrain.needs).toBe('watch');
    expect(workflow.jobs.retrain.if).toBe("needs.watch.outputs.drifted == 'true' || needs.watch.outputs.dropped == 'true'");
    const steps = workflow.jobs.retrain.steps.map((s: { name?: string }) => s.name ?? '');
    expect(steps.findIndex((n: string) => n.startsWith('Retrain'))).toBeLessThan(steps.findIndex((n: string) => n.startsWith('Build')));
    const commands = runs(workflow.jobs.retrain).map((l) => /mlops (\w+)/.exec(l)![1]);
    expect(commands).toEqual(['status', 'versions', 'build', 'test', 'bench', 'tag', 'push', 'deploy']);
    const retrain = runs(workflow.jobs.retrain);
    expect(retrain.find((l) => l.startsWith('mlops test'))).toContain('--baseline reports/baseline.json');
    expect(retrain.find((l) => l.startsWith('mlops deploy'))).toContain('--target staging');
  });

  it.skipIf(!jq.ok)(
    `monitor-and-retrain: the baseline step turns the registry's labels into the report \`mlops test --baseline\` reads${jq.ok ? '' : ` (skipped: ${jq.reason})`}`,
    async () => {
      const { parse } = await import('yaml');
      const workflow = parse(await readFile(path.join(__dirname, '..', 'templates', 'monitor-and-retrain.yml'), 'utf8'));
      const step = workflow.jobs.retrain.steps.find((s: { name?: string }) => s.name?.startsWith('Baseline')).run as string;
      const program = /jq --arg v "\$serving" '([^']+)'/.exec(step)![1];
      const listing = JSON.stringify({
        versions: [
          { version: '1.0.0', metrics: { 'test.accuracy': '0.97', 'test.passed': 'true', 'bench.p99_ms': '3.1' } },
          { version: '1.1.0', metrics: {} },
        ],
      });
      const baseline = JSON.parse(execFileSync(jq.path, ['--arg', 'v', '1.0.0', program], { input: listing, encoding: 'utf8' }));
      expect(baseline).toEqual({ version: '1.0.0', metrics: { accuracy: 0.97, passed: 'true' } });
    },
  );
});
