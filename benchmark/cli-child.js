// Runs one mlops command in this process and reports its exit code, stdout and
// peak resident memory, for benchmarks that measure a command on its own.
import { main } from '../dist/cli.js';

const argv = JSON.parse(process.argv[2]);
let stdout = '';
const code = await main(argv, { stdout: { write: (s) => (stdout += s) }, stderr: { write: () => true }, env: { ...process.env, CI: 'true' } });
process.stdout.write(JSON.stringify({ code, stdout, maxRssBytes: process.resourceUsage().maxRSS * 1024 }));
process.exit(0);
