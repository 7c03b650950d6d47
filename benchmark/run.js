// `npm run bench`: runs every benchmark section, prints a summary and writes
// benchmark/results/latest.json and latest.md. Medians and ratios come from one
// run on one machine; shared machines are noisy, so compare within a run.
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const only = process.argv.slice(2);
const sections = [
  ['dataplane', () => import('./dataplane.js')],
  ['real-inputs', () => import('./real-inputs.js')],
  ['batch', () => import('./batch-scoring.js')],
  ['server', () => import('./server.js')],
  ['build', () => import('./build.js')],
  ['test', () => import('./quality.js')],
  ['crosscheck', () => import('./crosscheck.js')],
];

const results = {
  date: new Date().toISOString(),
  machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memoryGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version },
  sections: {},
};
const markdown = [`# Benchmark results`, '', `${results.date}, ${results.machine.cpus} × ${results.machine.cpuModel}, Node ${process.version}`, ''];
for (const [name, load] of sections) {
  if (only.length > 0 && !only.includes(name)) continue;
  process.stderr.write(`\n== ${name}\n`);
  const section = await load();
  const outcome = await section.run({ log: (line) => process.stderr.write(`${line}\n`) });
  results.sections[name] = outcome.results;
  markdown.push(`## ${name}`, '', outcome.markdown, '');
}
await mkdir(path.join(here, 'results'), { recursive: true });
await writeFile(path.join(here, 'results', 'latest.json'), JSON.stringify(results, null, 2) + '\n');
await writeFile(path.join(here, 'results', 'latest.md'), markdown.join('\n'));
process.stdout.write(markdown.join('\n') + '\n');
process.stderr.write(`\nwritten: benchmark/results/latest.json, benchmark/results/latest.md\n`);
