/**
 * Certificates made with openssl for the TLS tests: a CA, a server certificate for 127.0.0.1 and
 * localhost, a client certificate, an expired server certificate, and a second CA's client.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface TestCertificates {
  dir: string;
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  expiredCert: string;
  expiredKey: string;
  /** A client certificate the CA issued, expired. */
  expiredClientCert: string;
  expiredClientKey: string;
  otherClientCert: string;
  otherClientKey: string;
  /** A second server certificate from the same CA, for rotation. */
  rotatedCert: string;
  rotatedKey: string;
}

const openssl = (dir: string, args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });

function ca(dir: string, name: string): void {
  openssl(dir, [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.crt`,
    '-days',
    '2',
    '-subj',
    `/CN=${name}`,
  ]);
}

function issue(dir: string, byCa: string, name: string, options: { server?: boolean; start?: string; end?: string } = {}): void {
  openssl(dir, [
    'req',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.csr`,
    '-subj',
    `/CN=${name}`,
  ]);
  const ext = path.join(dir, `${name}.ext`);
  execFileSync('sh', ['-c', `printf '%s\\n' "${options.server ? 'subjectAltName=IP:127.0.0.1,DNS:localhost' : 'extendedKeyUsage=clientAuth'}" > ${ext}`]);
  if (!options.start) {
    openssl(dir, [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${byCa}.crt`,
      '-CAkey',
      `${byCa}.key`,
      '-CAcreateserial',
      '-out',
      `${name}.crt`,
      '-extfile',
      ext,
      '-days',
      '2',
    ]);
    return;
  }
  // Dates in the past take `openssl ca` (OpenSSL 3.0's x509 has no -not_before), with a database of its own.
  const db = path.join(dir, `${name}-db`);
  execFileSync('sh', ['-c', `mkdir -p ${db} && touch ${db}/index.txt && echo 01 > ${db}/serial`]);
  const conf = path.join(dir, `${name}-ca.cnf`);
  writeFileSync(
    conf,
    `[ca]\ndefault_ca = x\n[x]\ndatabase = ${db}/index.txt\nserial = ${db}/serial\nnew_certs_dir = ${db}\ndefault_md = sha256\npolicy = p\n[p]\ncommonName = supplied\n`,
  );
  openssl(dir, [
    'ca',
    '-batch',
    '-config',
    conf,
    '-cert',
    `${byCa}.crt`,
    '-keyfile',
    `${byCa}.key`,
    '-in',
    `${name}.csr`,
    '-out',
    `${name}.crt`,
    '-startdate',
    options.start,
    '-enddate',
    options.end!,
    '-notext',
    '-extfile',
    ext,
  ]);
}

export function makeCertificates(): TestCertificates {
  const dir = mkdtempSync(path.join(tmpdir(), 'mlops-tls-'));
  ca(dir, 'ca');
  ca(dir, 'other-ca');
  issue(dir, 'ca', 'server', { server: true });
  issue(dir, 'ca', 'rotated', { server: true });
  issue(dir, 'ca', 'client');
  issue(dir, 'other-ca', 'other-client');
  issue(dir, 'ca', 'expired', { server: true, start: '20200101000000Z', end: '20200102000000Z' });
  issue(dir, 'ca', 'expired-client', { start: '20200101000000Z', end: '20200102000000Z' });
  const f = (name: string) => path.join(dir, name);
  return {
    dir,
    ca: f('ca.crt'),
    serverCert: f('server.crt'),
    serverKey: f('server.key'),
    clientCert: f('client.crt'),
    clientKey: f('client.key'),
    expiredCert: f('expired.crt'),
    expiredKey: f('expired.key'),
    expiredClientCert: f('expired-client.crt'),
    expiredClientKey: f('expired-client.key'),
    otherClientCert: f('other-client.crt'),
    otherClientKey: f('other-client.key'),
    rotatedCert: f('rotated.crt'),
    rotatedKey: f('rotated.key'),
  };
}
