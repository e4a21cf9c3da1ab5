// The node's CA bundle (node config caFile, docs/configuration.md#registries-with-a-private-ca-proxies):
// a docker-registry behind TLS with a certificate from a CA made here, pulled through the node
// pipeline built from a node config, by `spoke pull` and `spoke verify`, and by the shim. With the
// CA the pull succeeds, mirrors included; without it the registry is refused as a TLS failure;
// a caFile that cannot serve stops the shim at start; SIGHUP makes the shim trust a new bundle.

import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { loadNodeConfig } from '../../src/config/node-config.js';
import { createNodeContext } from '../../src/cli/wiring.js';
import { denySyscalls, pushRawArtifact } from '../helpers/artifacts.js';
import { rejectsWith } from '../helpers/assert.js';
import { spoke } from '../helpers/cli.js';
import { H2CriClient } from '../helpers/cri-client.js';
import { freePort, startRegistry, type TestRegistry } from '../helpers/registry.js';
import { startShim, stopShim } from '../helpers/shim.js';
import { makeTestCa, type TestCa } from '../helpers/tls.js';

describe('node caFile: a registry with a private CA', { timeout: 180_000 }, () => {
  let work: string;
  let ca: TestCa;
  let other: TestCa;
  let reg: TestRegistry;
  let reference: string;
  let n = 0;

  /** A policy admitting unsigned profiles under `scopes` (no insecure entry: HTTPS only), with `extra` lines. */
  const policyFile = (scopes: string[], extra = ''): string => {
    const file = join(work, `policy-${++n}.yaml`);
    const rules = scopes.flatMap((s) => [`  - scope: ${s}`, '    kinds: [seccomp]', '    unsigned: true']);
    writeFileSync(file, ['apiVersion: spoke.dev/v1alpha1', 'kind: NodeProfilePolicy', 'rules:', ...rules, extra].join('\n'));
    return file;
  };
  /** A node config with its own store, `caFile` when given. */
  const configFile = (policy: string, caFile?: string): string => {
    const file = join(work, `config-${++n}.yaml`);
    writeFileSync(file, [`policy: ${policy}`, `storeDir: ${join(work, `store-${n}`)}`, `seccompRoot: ${join(work, 'seccomp')}`, ...(caFile ? [`caFile: ${caFile}`] : [])].join('\n') + '\n');
    return file;
  };
  const pullWith = async (config: string, ref: string) => {
    const node = createNodeContext(loadNodeConfig(config));
    try {
      return await node.pipeline.pull({ reference: ref, kind: 'seccomp' });
    } finally {
      await node.close();
    }
  };

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'spoke-node-ca-'));
    ca = makeTestCa(work, 'corp');
    other = makeTestCa(work, 'other');
    reg = await startRegistry({ tls: ca });
    ({ reference } = await pushRawArtifact(reg.host, 'tls/profile', { layers: [{ bytes: denySyscalls(['acct']) }] }, undefined, ca.caFile));
  });
  after(async () => {
    await reg?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('a pipeline built from a node config with caFile pulls over TLS; without it the registry is refused as a TLS failure', async () => {
    const policy = policyFile([`${reg.host}/tls`]);
    const pulled = await pullWith(configFile(policy, ca.caFile), reference);
    assert.deepEqual([pulled.resolvedRef, pulled.cached], [reference, false]);
    const err = await rejectsWith(pullWith(configFile(policy), reference), { code: 'RegistryUnavailable', reason: 'TRANSPORT' });
    assert.match(err.message, /TLS verification failed/);
    // Another CA is added to the roots, not trusted in the registry's CA's place.
    await rejectsWith(pullWith(configFile(policy, other.caFile), reference), { code: 'RegistryUnavailable', reason: 'TRANSPORT' });
  });

  it("a mirror is trusted through the same caFile", async () => {
    // The reference names a registry that is down; the policy mirrors it to the TLS registry.
    const dead = `127.0.0.1:${await freePort()}`;
    const viaDead = reference.replace(reg.host, dead);
    const policy = policyFile([`${dead}/tls`], `mirrors:\n  ${JSON.stringify(dead)}: [${JSON.stringify(reg.host)}]`);
    const pulled = await pullWith(configFile(policy, ca.caFile), viaDead);
    assert.equal(pulled.resolvedRef, viaDead);
    await rejectsWith(pullWith(configFile(policy), viaDead), { code: 'RegistryUnavailable' });
  });

  it('spoke pull and spoke verify read caFile from --config; --ca-file wins over it', async () => {
    const policy = policyFile([`${reg.host}/tls`]);
    const pulled = await spoke(['pull', reference, '--kind', 'seccomp', '--config', configFile(policy, ca.caFile)]);
    assert.equal(pulled.code, 0, pulled.stderr);
    const refused = await spoke(['pull', reference, '--kind', 'seccomp', '--config', configFile(policy)]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^RegistryUnavailable: .*TLS verification failed.*\(reason TRANSPORT\)/);
    const flag = await spoke(['pull', reference, '--kind', 'seccomp', '--config', configFile(policy), '--ca-file', ca.caFile]);
    assert.equal(flag.code, 0, flag.stderr);

    const verified = await spoke(['verify', reference, '--config', configFile(policy, ca.caFile)]);
    assert.equal(verified.code, 0, verified.stderr);
    assert.match(verified.stdout, /no signature required/);
    const wins = await spoke(['verify', reference, '--config', configFile(policy, other.caFile), '--ca-file', ca.caFile]);
    assert.equal(wins.code, 0, wins.stderr);
    const notTrusted = await spoke(['verify', reference, '--config', configFile(policy)]);
    assert.equal(notTrusted.code, 1);
    assert.match(notTrusted.stderr, /^RegistryUnavailable: .*\(reason TRANSPORT\)/);
  });

  it('a caFile that cannot be read, or holds no PEM certificate, stops the shim at start', async () => {
    const policy = policyFile([`${reg.host}/tls`]);
    const notPem = join(work, 'not-pem.crt');
    writeFileSync(notPem, 'not a certificate\n');
    for (const [file, message] of [
      [join(work, 'missing.crt'), /caFile .*missing\.crt: cannot be read \(ENOENT\) \(reason FILE_UNREADABLE\)/],
      [notPem, /caFile .*not-pem\.crt: holds no PEM certificate.*\(reason OPTION_INVALID\)/],
    ] as const) {
      writeFileSync(join(work, 'shim-config.yaml'), `caFile: ${file}\n`);
      const r = await spoke(['shim', '--config', join(work, 'shim-config.yaml'), '--listen', join(work, 'refused.sock'), '--upstream', join(work, 'none.sock'), '--store', join(work, 'store-refused'), '--seccomp-root', join(work, 'seccomp'), '--policy', policy]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, message);
    }
  });

  it('the shim trusts a caFile replaced before SIGHUP from the next pull on; an invalid one keeps the last good bundle', async () => {
    const policy = policyFile([`${reg.host}/tls`]);
    const caFile = join(work, 'node-ca.pem');
    const replace = (from: string) => {
      copyFileSync(from, `${caFile}.tmp`);
      renameSync(`${caFile}.tmp`, caFile);
    };
    replace(other.caFile);
    const shim = await startShim(['--listen', join(work, 'shim.sock'), '--upstream', join(work, 'none.sock'), '--store', join(work, 'store-shim'), '--seccomp-root', join(work, 'seccomp'), '--policy', policy, '--ca-file', caFile]);
    const cri = new H2CriClient(join(work, 'shim.sock'));
    const pull = (image: string) => cri.img('PullSecurityProfileArtifact', { image: { image }, profile_kind: 'Seccomp', sandbox_config: { metadata: { name: 'p', namespace: 'default' } } });
    try {
      await assert.rejects(pull(reference), /grpc-status 14: .*TLS verification failed.*\(reason TRANSPORT\)/);
      const reloaded = shim.nextLog((l) => l.msg === 'registry CA bundle reloaded');
      replace(ca.caFile);
      shim.child.kill('SIGHUP');
      assert.equal((await reloaded).caFile, caFile);
      assert.deepEqual(await pull(reference), { resolved_ref: reference, cached: false });

      const kept = shim.nextLog((l) => l.msg === 'registry CA bundle not reloaded; keeping the last good one');
      writeFileSync(join(work, 'garbage.pem'), 'garbage\n');
      replace(join(work, 'garbage.pem'));
      shim.child.kill('SIGHUP');
      assert.match(String((await kept).error), /holds no PEM certificate/);
      const second = await pushRawArtifact(reg.host, 'tls/second', { layers: [{ bytes: denySyscalls(['swapon']) }] }, undefined, ca.caFile);
      assert.deepEqual(await pull(second.reference), { resolved_ref: second.reference, cached: false });
    } finally {
      cri.close();
      await stopShim(shim);
    }
  });
});
