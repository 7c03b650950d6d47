/**
 * Docs that stay true (issue 21): every link and section a page or a hint cites resolves, every flag in
 * a command's --help is documented and every documented flag exists, every config field the docs name
 * is in the schema, and the README's first shell example runs as written against a real server.
 * At test/'s root: it reads README.md, docs/ and templates/, not one src/ module.
 */
import { execa } from 'execa';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULTS, TARGET_DEFAULTS } from '../src/config/defaults.js';
import { startServer, type RunningServer } from '../src/server/run.js';
import { profileFor, ROOT, runCli, serveOptions } from './helpers.js';
import { applyDefaults } from '../src/config/normalize.js';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';

const PAGES = [
  'README.md',
  ...readdirSync(path.join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];
const text = (page: string) => readFileSync(path.join(ROOT, page), 'utf8');
/** GitHub's anchor for a heading. */
const slug = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\w\- ]/g, '')
    .replace(/ /g, '-');
const anchors = (page: string) => new Set([...text(page).matchAll(/^#{1,6} (.+)$/gm)].map((m) => slug(m[1])));
/** Markdown outside code blocks: examples may hold anything. */
const prose = (page: string) => text(page).replace(/```[\s\S]*?```/g, '');

describe('links and cited sections', () => {
  it('every relative link in README.md and docs/ resolves, anchors included', () => {
    const broken: string[] = [];
    for (const page of PAGES) {
      for (const [, target] of prose(page).matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^(https?|mailto):/.test(target)) continue;
        const [file, anchor] = target.split('#');
        const resolved = file ? path.join(path.dirname(page), file) : page;
        if (!existsSync(path.join(ROOT, resolved))) broken.push(`${page}: ${target} (no file)`);
        else if (anchor && resolved.endsWith('.md') && !anchors(resolved).has(anchor)) broken.push(`${page}: ${target} (no section)`);
      }
    }
    expect(broken).toEqual([]);
  });

  it('every docs section a hint in the code cites exists', () => {
    const sources = execFileSync('git', ['ls-files', 'src'], { cwd: ROOT, encoding: 'utf8' })
      .split('\n')
      .filter((f) => f.endsWith('.ts'));
    const cited = sources.flatMap((f) =>
      [...readFileSync(path.join(ROOT, f), 'utf8').matchAll(/(docs\/[\w-]+\.md|README\.md)[,:]? \\?"([^"\\]+)\\?"/g)].map((m) => ({
        from: f,
        page: m[1],
        section: m[2],
      })),
    );
    expect(cited.length).toBeGreaterThan(1);
    for (const { from, page, section } of cited) {
      expect(existsSync(path.join(ROOT, page)), `${from} cites ${page}`).toBe(true);
      const inPage = anchors(page).has(slug(section)) || new RegExp(`\\*\\*${section}\\*\\*`).test(text(page));
      expect(inPage, `${from} cites "${section}" in ${page}`).toBe(true);
    }
  });
});

describe('flags: --help and the docs agree', () => {
  const GLOBAL = ['--config', '--json', '--verbose', '--no-color', '--help', '--version'];
  const commandsTable = text('README.md')
    .split('\n')
    .filter((l) => l.startsWith('| `mlops '));

  it("every command is in the README's table, with every flag its --help lists, and no flag it does not", async () => {
    const problems: string[] = [];
    const { stdout } = await runCli(['--help']);
    const commands = [...stdout.matchAll(/^ {2}([a-z]+)\b/gm)].map((m) => m[1]).filter((c) => c !== 'help');
    expect(commands.length).toBeGreaterThan(12);
    for (const command of commands) {
      const rows = commandsTable.filter((l) => l.startsWith(`| \`mlops ${command} `) || l.startsWith(`| \`mlops ${command}\``));
      if (rows.length === 0) {
        problems.push(`${command}: not in the README's commands table`);
        continue;
      }
      const help = (await runCli([command, '--help'])).stdout;
      const offered = new Set([...help.matchAll(/(?:^|\s|,)(--[a-z][\w-]*)/gm)].map((m) => m[1]));
      const documented = new Set(rows.flatMap((row) => [...row.matchAll(/(--[a-z][\w-]*)/g)].map((m) => m[1])));
      for (const flag of offered)
        if (!GLOBAL.includes(flag) && !documented.has(flag)) problems.push(`${command}: ${flag} is in --help but not in the README's table`);
      for (const flag of documented)
        if (!offered.has(flag) && !GLOBAL.includes(flag)) problems.push(`${command}: ${flag} is documented but --help has no such flag`);
    }
    expect(problems).toEqual([]);
  });

  it("every `mlops <command> --flag` the docs show exists in that command's --help", async () => {
    const helps = new Map<string, Set<string>>();
    const problems: string[] = [];
    for (const page of PAGES) {
      // One command at a time: a shell line may chain several (&&, ;, |) and end in a comment.
      for (const [line] of text(page).matchAll(/mlops [a-z]+(?: (?:(?!&&|;|\||#)[^`\n])*)?/g)) {
        const command = line.split(' ')[1];
        if (!helps.has(command)) {
          const { code, stdout } = await runCli([command, '--help']);
          helps.set(command, new Set(code === 0 ? [...stdout.matchAll(/(--[a-z][\w-]*)/g)].map((m) => m[1]) : []));
        }
        const offered = helps.get(command)!;
        if (offered.size === 0) continue; // prose such as "mlops does not guess"
        for (const [flag] of line.matchAll(/--[a-z][\w-]*/g))
          if (!offered.has(flag) && !GLOBAL.includes(flag)) problems.push(`${page}: \`${line.trim()}\`: ${flag}`);
      }
    }
    expect(problems).toEqual([]);
  });
});

describe('config fields named in the docs', () => {
  it("exist in the schema's defaults", () => {
    const sections = Object.keys(DEFAULTS);
    const problems: string[] = [];
    const exists = (fieldPath: string[], root: unknown = DEFAULTS) => {
      let node: unknown = root;
      for (const key of fieldPath) {
        if (node && typeof node === 'object' && key in node) node = (node as Record<string, unknown>)[key];
        // Maps keyed by the user (gates, shapes, maxDrop): any key below them is theirs.
        else return node !== null && typeof node === 'object' && Object.keys(node).length === 0;
      }
      return true;
    };
    const targetFields = new Set(Object.values(TARGET_DEFAULTS).flatMap((t) => Object.keys(t)));
    for (const page of PAGES) {
      for (const [, name] of prose(page).matchAll(/`([a-z][A-Za-z]*(?:\.[A-Za-z][A-Za-z0-9]*)+)`/g)) {
        const [section, ...rest] = name.split('.');
        if (section === 'targets') {
          if (rest.length > 1 && !targetFields.has(rest[1]) && !rest[0].startsWith('<')) problems.push(`${page}: ${name}`);
          continue;
        }
        if (!sections.includes(section) || /\.(json|md|ts|js|yml|yaml|csv|onnx|npy|jsonl|proto|sh|mjs)$/.test(name)) continue;
        // A target's own sections (a target's `batch.parallelism`) are written relative to the target, as its reference lists them.
        // (Optional fields there have no default to look up, so the target's section standing is enough.)
        const inTarget = Object.values(TARGET_DEFAULTS).some((t) => exists([section, ...rest], t) || (rest.length === 1 && section in t));
        if (!exists([section, ...rest]) && !inTarget) problems.push(`${page}: ${name}`);
      }
    }
    expect(problems).toEqual([]);
  });
});

describe("the README's first example, run as written", () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startServer(serveOptions('breast_cancer', { modelName: 'breast_cancer' }), () => undefined);
  });
  afterAll(() => server?.stop());

  it('every metric name in the docs, the templates and the example config is one the server exports', async () => {
    // A server with every optional part on (reference profile, inference log, response cache), so that each metric family is declared.
    // A classifier and a regression model: their predictions are counted by different families.
    const work = await mkdtemp(path.join(tmpdir(), 'mlops-docs-metrics-'));
    let exposition = '';
    try {
      for (const [model, test] of [
        ['breast_cancer', { holdout: 'fixtures/breast_cancer/holdout.csv' }],
        ['diabetes', { holdout: 'fixtures/diabetes/holdout.csv', task: 'regression', label: 'target' }],
      ] as const) {
        const profile = path.join(work, `${model}.json`);
        const reference = await profileFor(model, { test });
        expect(reference.prediction, model).toBeTruthy();
        await writeFile(profile, JSON.stringify(reference));
        const log = { ...applyDefaults({}).server.inferenceLog, sample: 1, sink: `file:${path.join(work, `${model}.jsonl`)}` };
        const full = await startServer(
          serveOptions(model, { modelName: model, profilePath: profile, responseCacheBytes: 1 << 20, inferenceLog: log }),
          () => undefined,
        );
        try {
          exposition += await (await fetch(`${full.url}/metrics`)).text();
        } finally {
          await full.stop();
        }
      }
    } finally {
      await rm(work, { recursive: true, force: true });
    }
    const families = new Set(
      [...exposition.matchAll(/^# TYPE (\S+) (\w+)$/gm)].flatMap(([, name, type]) =>
        type === 'histogram' || type === 'summary' ? [name, `${name}_bucket`, `${name}_sum`, `${name}_count`] : [name],
      ),
    );
    expect(families.size).toBeGreaterThan(10);
    const files = [
      ...PAGES,
      'mlops.config.example.json',
      ...readdirSync(path.join(ROOT, 'templates'))
        .filter((f) => /\.(ya?ml)$/.test(f))
        .map((f) => `templates/${f}`),
    ];
    // Metrics other programs export, which the docs name beside ours.
    const foreign = /^mlops_(alert|monitor)_/;
    const unknown = files.flatMap((file) =>
      [...new Set([...text(file).matchAll(/\bmlops_[a-z0-9_]*[a-z0-9]\b/g)].map((m) => m[0]))]
        .filter((name) => !families.has(name) && !foreign.test(name))
        .map((name) => `${file}: ${name}`),
    );
    expect(unknown).toEqual([]);
  });

  it("every curl in the Quick start answers 200 from `npm run example`'s server (on a free port here)", async () => {
    const block = /To only serve the model[\s\S]*?```sh\n([\s\S]*?)```/.exec(text('README.md'))?.[1];
    expect(block).toBeDefined();
    const port = new URL(server.url).port;
    const commands = block!
      .replace(/127\.0\.0\.1:8080/g, `127.0.0.1:${port}`)
      .split(/\n(?=curl )/)
      .map((c) => c.trim())
      .filter(Boolean);
    expect(commands.length).toBe(5);
    for (const command of commands) {
      const withStatus = command.includes('|') ? command : `${command} -o /dev/null -w '%{http_code}'`;
      // Not execFileSync: the server runs in this process and must answer meanwhile.
      const { stdout: out } = await execa('bash', ['-o', 'pipefail', '-c', withStatus]);
      if (command.includes('|')) expect(out, command).toMatch(/^mlops_http_requests_total/m);
      else expect(out, command).toBe('200');
    }
  });
});

describe('what the docs call missing', () => {
  it('names no deploy target that exists', () => {
    const types = Object.keys(TARGET_DEFAULTS);
    const claims = PAGES.flatMap((page) =>
      [
        ...prose(page)
          .replace(/\n/g, ' ')
          .matchAll(/[^.]*\bnot (?:built|supported|implemented|available) yet\b[^.]*/g),
      ].map((m) => ({ page, sentence: m[0] })),
    );
    const wrong = claims.filter(({ sentence }) => types.some((t) => new RegExp(`\\b${t}\\b`, 'i').test(sentence)));
    expect(wrong).toEqual([]);
  });
});
