// A multi-architecture profile through the real shim on real containerd + runc
// (docs/multi-arch.md): the pod names the index digest; the shim pulls it over CRI, takes this
// node's (amd64) profile, and the container runs under it, merged with the node config's
// `baselines` entry for amd64; the runtime never sees the index.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Msg } from '../helpers/cri-client.js';
import { pushTestArtifact } from '../helpers/signing.js';
import { putIndex } from '../helpers/multiarch.js';
import { startShimRig, type ShimRig } from '../helpers/shim-rig.js';
import { ProfileStore } from '../../src/store/store.js';

const X86 = ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'];
const ARM = ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'];

describe('multi-architecture profile applied through the shim', { timeout: 300_000 }, () => {
  let rig: ShimRig;

  before(async () => {
    rig = await startShimRig('skm-', {
      extraArgs: ({ work }) => {
        // The amd64 baseline: the shipped one without chmod. The arm64 entry names a file that does
        // not exist: the shim would refuse to start if it read it.
        const shipped = JSON.parse(readFileSync(new URL('../../../policy/seccomp-baseline.json', import.meta.url), 'utf8')) as { syscalls: { names: string[] }[] };
        shipped.syscalls[0]!.names = shipped.syscalls[0]!.names.filter((n) => !['chmod', 'fchmod', 'fchmodat', 'fchmodat2'].includes(n));
        writeFileSync(join(work, 'amd64-baseline.json'), JSON.stringify(shipped));
        const config = join(work, 'config.yaml');
        writeFileSync(config, ['baselines:', '  amd64: amd64-baseline.json', `  arm64: ${join(work, 'missing-arm64-baseline.json')}`, ''].join('\n'));
        return ['--config', config];
      },
    });
  });

  after(() => rig.tearDown());

  test('the pod names the index digest; the container runs under the amd64 profile and the amd64 baseline', async () => {
    // Each platform's profile denies something else, so the container shows which one it got.
    const amd64 = await pushTestArtifact(rig.reg.url, rig.reg.host, 'profiles/multi', { defaultAction: 'SCMP_ACT_ALLOW', architectures: X86, syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO' }] });
    const arm64 = await pushTestArtifact(rig.reg.url, rig.reg.host, 'profiles/multi', { defaultAction: 'SCMP_ACT_ALLOW', architectures: ARM, syscalls: [{ names: ['uname'], action: 'SCMP_ACT_ERRNO' }] });
    const index = await putIndex(rig.reg.url, rig.reg.host, 'profiles/multi', [
      { artifact: arm64, platform: { os: 'linux', architecture: 'arm64' } },
      { artifact: amd64, platform: { os: 'linux', architecture: 'amd64' } },
    ]);

    const pulled = await rig.cri.img('PullSecurityProfileArtifact', { image: { image: index.reference }, profile_kind: 'Seccomp', sandbox_config: { metadata: { name: 'p', namespace: 'default' } } });
    assert.equal(pulled.resolved_ref, index.reference);
    const record = await new ProfileStore({ root: rig.files.storeDir }).getRecord(index.digest);
    assert.equal(record?.platform?.digest, amd64.digest);

    const p = await rig.pod({ name: 'multi' });
    try {
      const cid = await rig.cri.startBusybox(p, 'multi', { seccomp: { profile_type: 'OCI', oci_ref: index.reference } as Msg });
      assert.match(await rig.cri.sh(cid, 'mkdir /tmp/m$$ && echo MKDIR_OK || echo MKDIR_DENIED'), /MKDIR_DENIED/);
      assert.match(await rig.cri.sh(cid, 'uname -m && echo UNAME_OK || echo UNAME_DENIED'), /x86_64\s+UNAME_OK/);
      // chmod: allowed by both profiles, denied by this node's `baselines.amd64`.
      const chmod = await rig.cri.sh(cid, 'touch /tmp/f$$ && echo TOUCH_OK; chmod 600 /tmp/f$$ && echo CHMOD_OK || echo CHMOD_DENIED');
      for (const re of [/TOUCH_OK/, /CHMOD_DENIED/, /chmod: .*Operation not permitted/]) assert.match(chmod, re);
      const list = await rig.cri.img('ListSecurityProfiles', {});
      const entry = (list.profiles as Msg[]).find((x) => x.digest === index.digest);
      assert.equal(entry?.in_use, true);
      // containerd saw a Localhost profile, never the index reference.
      assert.ok(!rig.tap.streams().some((s) => s.request.includes(Buffer.from(index.reference))));
    } finally {
      await rig.removePod(p.id);
    }
  });
});
