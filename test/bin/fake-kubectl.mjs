#!/usr/bin/env node
/**
 * Answers as kubectl would for `mlops monitor --target` on Kubernetes, with
 * real servers standing in for pods: FAKE_KUBECTL_PODS="pod-a=8001,pod-b=8002"
 * lists the pods and the local ports of the servers behind them, and
 * port-forward really forwards. Every call is appended to FAKE_KUBECTL_LOG.
 */
import { appendFileSync } from 'node:fs';
import net from 'node:net';

const args = process.argv.slice(2);
if (process.env.FAKE_KUBECTL_LOG) appendFileSync(process.env.FAKE_KUBECTL_LOG, `${JSON.stringify(args)}\n`);
const pods = Object.fromEntries(
  (process.env.FAKE_KUBECTL_PODS ?? '')
    .split(',')
    .filter(Boolean)
    .map((p) => p.split('=')),
);

if (args.includes('get') && args.includes('pods')) {
  process.stdout.write(JSON.stringify({ items: Object.keys(pods).map((name) => ({ metadata: { name }, status: { phase: 'Running' } })) }));
  process.exit(0);
}
const at = args.indexOf('port-forward');
if (at !== -1) {
  const pod = args[at + 1].replace(/^pod\//, '');
  const [local, remote] = args[at + 2].split(':');
  if (!pods[pod]) {
    process.stderr.write(`error: pods "${pod}" not found\n`);
    process.exit(1);
  }
  net
    .createServer((client) => {
      const upstream = net.connect(Number(pods[pod]), '127.0.0.1');
      client.pipe(upstream).pipe(client);
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
    })
    .listen(Number(local), '127.0.0.1', () => process.stdout.write(`Forwarding from 127.0.0.1:${local} -> ${remote}\n`));
  process.on('SIGTERM', () => process.exit(0));
} else {
  process.stderr.write(`fake kubectl: unexpected ${args.join(' ')}\n`);
  process.exit(1);
}
