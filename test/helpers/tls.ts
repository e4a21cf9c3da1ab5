// A CA made for a test and a server certificate it issued for 127.0.0.1 (openssl, P-256, two
// days): for a TLS registry (startRegistry({ tls })) that only a client given the CA trusts.

import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TestCa {
  /** The CA's certificate (PEM): what a client is given as its caFile. */
  caFile: string;
  /** The server's certificate and key, for `startRegistry({ tls: { certFile, keyFile } })`. */
  certFile: string;
  keyFile: string;
}

/** Writes a CA (`<name>-ca.crt`) and a server certificate for IP 127.0.0.1 it signed into `dir`. */
export function makeTestCa(dir: string, name = 'test'): TestCa {
  const f = (n: string) => join(dir, `${name}-${n}`);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const run = (args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' });
  run(['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.crt'), '-days', '2', '-subj', `/CN=spoke-${name}-ca`]);
  run(['req', ...ec, '-keyout', f('srv.key'), '-out', f('srv.csr'), '-subj', '/CN=127.0.0.1']);
  writeFileSync(f('ext.cnf'), 'subjectAltName=IP:127.0.0.1\n');
  run(['x509', '-req', '-in', f('srv.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('srv.crt'), '-days', '2', '-extfile', f('ext.cnf')]);
  return { caFile: f('ca.crt'), certFile: f('srv.crt'), keyFile: f('srv.key') };
}
