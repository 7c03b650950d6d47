#!/usr/bin/env node
// The only place that exits the process; everything else returns an exit code.
import { main } from '../dist/cli.js';

const code = await main(process.argv.slice(2));
// Let a piped stdout drain before exiting, so --json output is never cut short.
process.stdout.write('', () => process.exit(code));
