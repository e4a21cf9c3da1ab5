// The verdict cache against a real docker-registry: only what the content alone decides is
// remembered per digest; kind, size limit and signature are judged on every call, and
// `spoke store forget` clears what was remembered.

import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sha256Digest, type Digest } from '../../src/core/digest.js';
import { ALLOW_ALL_SECCOMP, denySyscalls, pushRawArtifact } from '../helpers/artifacts.js';
import { spoke } from '../helpers/cli.js';
import { testNode, unsignedPolicy } from '../helpers/node.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { rejectsWith } from '../helpers/assert.js';
import { contentRules } from '../../src/cli/version.js';

/** Both kinds allowed unsigned from `scope`, with an optional size limit. */
function bothKinds(scope: string, maxArtifactBytes?: number): string {
  return [
    'apiVersion: spoke.dev/v1alpha1',
    'kind: NodeProfilePolicy',
    'rules:',
    `  - scope: ${scope}`,
    '    kinds: [seccomp, apparmor]',
    '    unsigned: true',
    `insecure: [${scope.split('/')[0]}]`,
    ...(maxArtifactBytes === undefined ? [] : ['limits:', `  maxArtifactBytes: ${maxArtifactBytes}`]),
  ].join('\n');
}

describe('verdict cache', () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await startRegistry();
  });
  after(async () => {
    await reg.stop();
  });

  it('a pull with the wrong kind does not poison the digest for a pull with the right kind', async () => {
    const node = testNode(bothKinds(`${reg.host}/verdicts`));
    try {
      const { reference, digest } = await pushRawArtifact(reg.host, 'verdicts/kind', { layers: [{ bytes: denySyscalls(['mount']) }] });
      await rejectsWith(node.pipeline.pull({ reference, kind: 'apparmor' }), { code: 'SecurityProfileInvalid', reason: 'KIND_MISMATCH' });
      assert.equal(await node.store.getInvalid(digest as Digest), undefined);
      assert.equal((await node.pipeline.pull({ reference, kind: 'seccomp' })).cached, false);
      // Cached now: the wrong kind is still refused, and the right one still served.
      await rejectsWith(node.pipeline.pull({ reference, kind: 'apparmor' }), { code: 'SecurityProfileInvalid', reason: 'KIND_MISMATCH' });
      assert.equal((await node.pipeline.pull({ reference, kind: 'seccomp' })).cached, true);
    } finally {
      await node.dispose();
    }
  });

  it('raising maxArtifactBytes re-admits a digest; lowering it refuses a cached one', async () => {
    const layer = denySyscalls(['umount2', 'mount', 'pivot_root']);
    const small = layer.length - 1;
    const node = testNode(bothKinds(`${reg.host}/verdicts`, small));
    try {
      const { reference, digest } = await pushRawArtifact(reg.host, 'verdicts/size', { layers: [{ bytes: layer }] });
      await rejectsWith(node.pipeline.pull({ reference, kind: 'seccomp' }), { code: 'SecurityProfileInvalid', reason: 'SIZE_LIMIT' });
      assert.equal(await node.store.getInvalid(digest as Digest), undefined);
      node.writePolicy(bothKinds(`${reg.host}/verdicts`, layer.length));
      assert.equal((await node.pipeline.pull({ reference, kind: 'seccomp' })).cached, false);
      node.writePolicy(bothKinds(`${reg.host}/verdicts`, small));
      await rejectsWith(node.pipeline.pull({ reference, kind: 'seccomp' }), { code: 'SecurityProfileInvalid', reason: 'SIZE_LIMIT' });
    } finally {
      await node.dispose();
    }
  });

  it("lowering maxArtifactBytes below a cached artifact's config descriptor refuses it, as a fresh pull would", async () => {
    const layer = denySyscalls(['mount']);
    const configBytes = Buffer.from(JSON.stringify({ pad: 'x'.repeat(400) }));
    const node = testNode(bothKinds(`${reg.host}/verdicts`));
    try {
      const { reference } = await pushRawArtifact(reg.host, 'verdicts/config-size', { layers: [{ bytes: layer }], configBytes });
      assert.equal((await node.pipeline.pull({ reference, kind: 'seccomp' })).cached, false);
      assert.ok(layer.length < configBytes.length);
      node.writePolicy(bothKinds(`${reg.host}/verdicts`, layer.length));
      const e = await rejectsWith(node.pipeline.pull({ reference, kind: 'seccomp' }), { code: 'SecurityProfileInvalid', reason: 'SIZE_LIMIT' });
      assert.equal(e.context.actual, configBytes.length);
      // A fresh node refuses it the same way.
      const fresh = testNode(bothKinds(`${reg.host}/verdicts`, layer.length));
      try {
        await rejectsWith(fresh.pipeline.pull({ reference, kind: 'seccomp' }), { code: 'SecurityProfileInvalid', reason: 'SIZE_LIMIT' });
      } finally {
        await fresh.dispose();
      }
    } finally {
      await node.dispose();
    }
  });

  it('a content verdict is remembered until `spoke store forget` clears it', async () => {
    const node = testNode(unsignedPolicy([`${reg.host}/verdicts`]));
    try {
      const { reference, digest } = await pushRawArtifact(reg.host, 'verdicts/forget', { layers: [{ bytes: ALLOW_ALL_SECCOMP }, { bytes: ALLOW_ALL_SECCOMP }] });
      await rejectsWith(node.pipeline.pull({ reference, kind: 'seccomp' }), { code: 'SecurityProfileInvalid' });
      assert.ok(await node.store.getInvalid(digest as Digest), 'two layers is a verdict on the content');
      await rejectsWith(node.pipeline.pull({ reference, kind: 'seccomp' }), { code: 'SecurityProfileInvalid', reason: 'KNOWN_INVALID' });
      const r = await spoke(['store', 'forget', digest, '--store', node.config.storeDir, '--json']);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), { digest, invalid: true, signatures: 0 });
      assert.equal(await node.store.getInvalid(digest as Digest), undefined);
      await reg.resetRequests();
      await rejectsWith(node.pipeline.pull({ reference, kind: 'seccomp' }), { code: 'SecurityProfileInvalid' });
      await reg.settle();
      assert.ok(reg.requests().length > 0, 'judged again from the registry');
      const again = await spoke(['store', 'forget', 'sha256:nothex', '--store', node.config.storeDir]);
      assert.equal(again.code, 2, again.stderr);
    } finally {
      await node.dispose();
    }
  });

  it("judges again a digest another spoke build refused: that build's rules may not be this one's", async () => {
    const node = testNode(unsignedPolicy([`${reg.host}/verdicts`]));
    try {
      const { reference, digest } = await pushRawArtifact(reg.host, 'verdicts/other-build', { layers: [{ bytes: denySyscalls(['swapon']) }] });
      const dir = join(node.config.storeDir, 'invalid', 'sha256');
      mkdirSync(dir, { recursive: true });
      const file = join(dir, `${digest.slice(7)}.json`);
      // An older build refused it (say, a syscall name its table did not know), and a build before that recorded no rules.
      for (const older of [{ rules: 'spoke 0.0.9 0123abc' }, {}]) {
        writeFileSync(file, JSON.stringify({ digest, reason: 'unknown syscall "swapon"', at: '2026-01-01T00:00:00Z', scope: 'content', ...older }));
        assert.equal(await node.store.getInvalid(digest as Digest), undefined, JSON.stringify(older));
      }
      assert.equal((await node.pipeline.pull({ reference, kind: 'seccomp' })).cached, false);
      // This build's own verdict is served.
      const { reference: bad, digest: badDigest } = await pushRawArtifact(reg.host, 'verdicts/this-build', { layers: [{ bytes: ALLOW_ALL_SECCOMP }, { bytes: ALLOW_ALL_SECCOMP }] });
      await rejectsWith(node.pipeline.pull({ reference: bad, kind: 'seccomp' }), { code: 'SecurityProfileInvalid' });
      assert.equal((await node.store.getInvalid(badDigest as Digest))?.rules, contentRules());
      await rejectsWith(node.pipeline.pull({ reference: bad, kind: 'seccomp' }), { code: 'SecurityProfileInvalid', reason: 'KNOWN_INVALID' });
    } finally {
      await node.dispose();
    }
  });

  it('ignores a verdict file written without a scope (older versions cached request-dependent refusals)', async () => {
    const node = testNode(unsignedPolicy([`${reg.host}/verdicts`]));
    try {
      const { reference, digest } = await pushRawArtifact(reg.host, 'verdicts/legacy', { layers: [{ bytes: denySyscalls(['acct']) }] });
      const dir = join(node.config.storeDir, 'invalid', 'sha256');
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, `${digest.slice(7)}.json`), JSON.stringify({ digest, reason: 'artifact type is not a apparmor profile', at: '2026-01-01T00:00:00Z' }));
      assert.equal((await node.pipeline.pull({ reference, kind: 'seccomp' })).cached, false);
    } finally {
      await node.dispose();
    }
  });

  it('a stored artifact that today\'s rules refuse (admitted by an older spoke) is refused by a cached pull, before it is handed out', async () => {
    const node = testNode(unsignedPolicy([`${reg.host}/verdicts`]));
    try {
      // ERRNO(0): a refused call reporting success, which the artifact rules now refuse.
      const layer = Buffer.from(JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['setuid', 'capset'], action: 'SCMP_ACT_ERRNO', errnoRet: 0 }] }));
      const { reference, digest, manifest } = await pushRawArtifact(reg.host, 'verdicts/older', { layers: [{ bytes: layer }] });
      // As an older spoke stored it: the record and blob in place, judged by its rules.
      await node.store.ingest({ digest: digest as Digest, manifestBytes: manifest, layerDigest: sha256Digest(layer), layerBytes: layer, kind: 'seccomp', reference, rule: 'rules[0]', servedBy: reg.host, nodeCredentials: true });
      await rejectsWith(node.pipeline.pull({ reference, kind: 'seccomp' }), { code: 'SecurityProfileInvalid', reason: 'PROFILE_INVALID' });
      // A valid one stored the same way is served from the store.
      const good = denySyscalls(['swapoff']);
      const ok = await pushRawArtifact(reg.host, 'verdicts/older-good', { layers: [{ bytes: good }] });
      await node.store.ingest({ digest: ok.digest as Digest, manifestBytes: ok.manifest, layerDigest: sha256Digest(good), layerBytes: good, kind: 'seccomp', reference: ok.reference, rule: 'rules[0]', servedBy: reg.host, nodeCredentials: true });
      assert.equal((await node.pipeline.pull({ reference: ok.reference, kind: 'seccomp' })).cached, true);
    } finally {
      await node.dispose();
    }
  });

  it('a stored blob removed while a cached pull judges it (gc of another process, `spoke store rm`) is fetched again, not refused', async () => {
    const node = testNode(unsignedPolicy([`${reg.host}/verdicts`]));
    try {
      const { reference } = await pushRawArtifact(reg.host, 'verdicts/removed', { layers: [{ bytes: denySyscalls(['sethostname']) }] });
      assert.equal((await node.pipeline.pull({ reference, kind: 'seccomp' })).cached, false);
      // A new process (its own memory of what it judged) whose first cached pull loses the blob between its check and its read.
      const next = testNode(unsignedPolicy([`${reg.host}/verdicts`]), { storeDir: node.config.storeDir });
      try {
        const read = next.store.readBlob.bind(next.store);
        let removed = false;
        next.store.readBlob = async (d, opts) => {
          if (!removed) {
            removed = true;
            rmSync(next.store.blobPath(d));
          }
          return read(d, opts);
        };
        assert.equal((await next.pipeline.pull({ reference, kind: 'seccomp' })).cached, false);
        assert.ok(removed);
      } finally {
        await next.dispose();
      }
    } finally {
      await node.dispose();
    }
  });
});
