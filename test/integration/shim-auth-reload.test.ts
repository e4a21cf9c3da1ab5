// The node's registry credentials file is watched like the policy and the baseline
// (docs/configuration.md#registry-credentials): tokens rotated into it by a helper (an ECR or GCR
// credential refresher rewrites it every few hours) reach the next pull without a restart, and a
// file made unreadable or invalid keeps the last good credentials. A real htpasswd registry.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { credentialsFromEntries } from '../../src/registry/credentials.js';
import { denySyscalls, pushRawArtifact } from '../helpers/artifacts.js';
import { H2CriClient } from '../helpers/cri-client.js';
import { unsignedPolicy } from '../helpers/node.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { startShim, stopShim, type ShimProc } from '../helpers/shim.js';

describe('spoke shim: the registry credentials file is watched', { timeout: 120_000 }, () => {
  let reg: TestRegistry;
  let work: string;
  let shim: ShimProc | undefined;
  let cri: H2CriClient | undefined;
  let authFile: string;
  const alice = { kind: 'basic', username: 'alice', password: 's3cret' } as const;
  const replace = (text: string) => {
    writeFileSync(`${authFile}.tmp`, text);
    renameSync(`${authFile}.tmp`, authFile);
  };
  const authJson = (password: string) => JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from(`alice:${password}`).toString('base64') } } });
  const pull = (image: string) => cri!.img('PullSecurityProfileArtifact', { image: { image }, profile_kind: 'Seccomp', sandbox_config: { metadata: { name: 'p', namespace: 'default' } } });

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'spoke-authreload-'));
    writeFileSync(join(work, 'htpasswd'), `${execFileSync('htpasswd', ['-Bbn', 'alice', 's3cret'], { encoding: 'utf8' }).trim()}\n`);
    reg = await startRegistry({ authYaml: `htpasswd:\n  realm: spoke-test\n  path: ${join(work, 'htpasswd')}` });
    authFile = join(work, 'auth.json');
    writeFileSync(authFile, authJson('expired'));
    writeFileSync(join(work, 'policy.yaml'), unsignedPolicy([`${reg.host}/private`]));
    shim = await startShim(['--listen', join(work, 'shim.sock'), '--upstream', join(work, 'none.sock'), '--store', join(work, 'store'), '--seccomp-root', join(work, 'seccomp'), '--policy', join(work, 'policy.yaml'), '--auth-file', authFile]);
    cri = new H2CriClient(join(work, 'shim.sock'));
  });
  after(async () => {
    cri?.close();
    if (shim) await stopShim(shim);
    await reg.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('rotated credentials reach the next pull without a restart; an invalid file keeps the last good ones', async () => {
    const owner = credentialsFromEntries({ [reg.host]: alice });
    const first = await pushRawArtifact(reg.host, 'private/first', { layers: [{ bytes: denySyscalls(['acct']) }] }, owner);
    const second = await pushRawArtifact(reg.host, 'private/second', { layers: [{ bytes: denySyscalls(['swapon']) }] }, owner);
    await assert.rejects(pull(first.reference), /grpc-status 16: .*\(reason AUTH_REFUSED\)/);

    const reloaded = shim!.nextLog((l) => l.msg === 'registry credentials reloaded');
    replace(authJson('s3cret'));
    assert.equal((await reloaded).authFile, authFile);
    assert.deepEqual(await pull(first.reference), { resolved_ref: first.reference, cached: false });

    const kept = shim!.nextLog((l) => l.msg === 'registry credentials not reloaded; keeping the last good ones');
    replace('{ "auths": ');
    assert.match(String((await kept).error), /auth file .*auth\.json/);
    assert.deepEqual(await pull(second.reference), { resolved_ref: second.reference, cached: false });
  });
});
