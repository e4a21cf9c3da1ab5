// What a publisher pushes is bounded like what a node pulls: a profile larger than any node
// policy admits (limits.maxArtifactBytes, at most 16 MiB) is refused before any request.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_POLICY_ARTIFACT_BYTES } from '../../../src/core/limits.js';
import { pushProfile, pushProfileIndex } from '../../../src/publish/push.js';
import type { RegistryClient } from '../../../src/registry/types.js';
import { spokeError } from '../../helpers/assert.js';

describe('pushProfileIndex', () => {
  it('refuses a platform whose architecture is a name every object has (constructor, toString), without a request', async () => {
    const registry = new Proxy({}, { get: () => () => assert.fail('no request may be made') }) as RegistryClient;
    for (const architecture of ['constructor', 'toString', 'valueof']) {
      const entries = [{ platform: { os: 'linux', architecture }, bytes: Buffer.from('{"defaultAction":"SCMP_ACT_ALLOW"}') }];
      await assert.rejects(pushProfileIndex(registry, { registry: 'r.io', repository: 'p' }, 'v1', entries, 'seccomp'), spokeError({ code: 'InvalidArgument', reason: 'OPTION_INVALID' }), architecture);
    }
  });
});

describe('pushProfile', () => {
  it(`refuses a profile over ${MAX_POLICY_ARTIFACT_BYTES} bytes, SIZE_LIMIT, without a request`, async () => {
    const registry = new Proxy({}, { get: () => () => assert.fail('no request may be made') }) as RegistryClient;
    const huge = Buffer.concat([Buffer.from('{"defaultAction":"SCMP_ACT_ALLOW"}'), Buffer.alloc(MAX_POLICY_ARTIFACT_BYTES, ' ')]);
    await assert.rejects(pushProfile(registry, { registry: 'r.io', repository: 'p' }, 'v1', huge, 'seccomp'), spokeError({ code: 'SecurityProfileInvalid', reason: 'SIZE_LIMIT' }));
  });
});
