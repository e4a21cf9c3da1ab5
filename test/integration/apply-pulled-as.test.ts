// A create's OCI profile must have been pulled (NOT_PULLED otherwise): besides the references the
// store's record keeps, capped per artifact, the shim accepts what this process pulled for the
// create's namespace. Another namespace naming the same digest under new references pushes the
// record's oldest out, but cannot push out what was pulled for this one (docs/shim.md).

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ProfileApplier } from '../../src/cri/apply.js';
import type { Digest } from '../../src/core/digest.js';
import { PROFILE_OCI } from '../../src/cri/messages.js';
import { decodeSeccomp } from '../../src/profiles/seccomp/index.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { denySyscalls, pushRawArtifact } from '../helpers/artifacts.js';
import { rejectsWith } from '../helpers/assert.js';
import { withTestNode } from '../helpers/node.js';
import { applierDeps } from '../helpers/shim.js';
import { baselineBytes } from '../unit/profiles/seccomp-fixtures.js';

describe('pulled references across namespaces', () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await startRegistry();
  });
  after(async () => {
    await reg.stop();
  });

  it("another namespace's cached pulls of the digest under 32 new references leave this namespace's create working", () => {
    const rule = (team: string) => [`  - scope: ${reg.host}/${team}`, '    kinds: [seccomp]', '    unsigned: true', `    namespaces: [${team}]`];
    const policy = ['apiVersion: spoke.dev/v1alpha1', 'kind: NodeProfilePolicy', 'rules:', ...rule('team-a'), ...rule('team-b'), `insecure: [${reg.host}]`].join('\n');
    return withTestNode(policy, async (node) => {
      const { reference, digest } = await pushRawArtifact(reg.host, 'team-a/prof', { layers: [{ bytes: denySyscalls(['mkdir']) }] });
      assert.equal((await node.pipeline.pull({ reference, kind: 'seccomp', namespace: 'team-a' })).cached, false);
      const applier = new ProfileApplier(
        applierDeps({ pipeline: node.pipeline, store: node.store, baseline: decodeSeccomp(baselineBytes()), seccompRoot: join(node.dir, 'seccomp'), policy: async () => node.policy.current() }),
      );
      const oci = { profileType: PROFILE_OCI, localhostRef: '', ociRef: reference, base: undefined };
      await applier.apply(oci, { who: 'container team-a/p/c', namespace: 'team-a' });
      // team-b knows the digest: its pulls are served from the store, no registry request.
      for (let i = 0; i < 32; i++) assert.equal((await node.pipeline.pull({ reference: `${reg.host}/team-b/x${i}@${digest}`, kind: 'seccomp', namespace: 'team-b' })).cached, true);
      assert.ok(!(await node.store.getRecord(digest as Digest))!.references.includes(reference), "the record's cap pushed team-a's reference out");
      await applier.apply(oci, { who: 'container team-a/p/c2', namespace: 'team-a' });
      // What no namespace pulled under that reference is still refused.
      const never = { ...oci, ociRef: `${reg.host}/team-b/never@${digest}` };
      await rejectsWith(applier.apply(never, { who: 'container team-b/p/c', namespace: 'team-b' }), { code: 'FailedPrecondition', reason: 'NOT_PULLED' });
    });
  });
});
