// The KEP-6061 §4 AppArmor intersection rules, one test per rule.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  appArmorProfileName,
  formatAppArmorConstraint,
  intersectAppArmor,
  type AppArmorProfile,
  type EffectiveAppArmorProfile,
} from '../../../src/profiles/apparmor/index.js';
import { SpokeError } from '../../../src/core/errors.js';
import { spokeError } from '../../helpers/assert.js';

const fs = (ro: string[] = [], wo: string[] = [], rw: string[] = []): AppArmorProfile => ({ filesystem: { readOnlyPaths: ro, writeOnlyPaths: wo, readWritePaths: rw } });
const files = (p: EffectiveAppArmorProfile) => p.filesystem;
const merge = (b: AppArmorProfile, a: AppArmorProfile) => intersectAppArmor(b, a);

describe('AppArmor intersection (KEP-6061 §4)', () => {
  it('capabilities: set intersection', () => {
    const r = merge({ capability: { allowedCapabilities: ['CHOWN', 'KILL'] } }, { capability: { allowedCapabilities: ['KILL', 'SYS_ADMIN'] } });
    assert.deepEqual(r.profile.capability.allowedCapabilities, ['KILL']);
    assert.deepEqual(r.constrained, [{ kind: 'capability', capability: 'SYS_ADMIN', by: 'baseline' }]);
  });

  it('capabilities: ASCII case-insensitive, result upper-cased', () => {
    const r = merge({ capability: { allowedCapabilities: ['chown', 'Net_Bind_Service'] } }, { capability: { allowedCapabilities: ['CHOWN', 'net_bind_service'] } });
    assert.deepEqual(r.profile.capability.allowedCapabilities, ['CHOWN', 'NET_BIND_SERVICE']);
    assert.deepEqual(r.constrained, []);
  });

  it('network: each boolean ANDed', () => {
    const r = merge(
      { network: { allowRaw: true, allowedProtocols: { allowTcp: true, allowUdp: false } } },
      { network: { allowRaw: false, allowedProtocols: { allowTcp: true, allowUdp: true } } },
    );
    assert.deepEqual(r.profile.network, { allowRaw: false, allowedProtocols: { allowTcp: true, allowUdp: false } });
    assert.deepEqual(r.constrained, [{ kind: 'network', permission: 'allowUdp', by: 'baseline' }]);
  });

  it('filesystem: a glob that may spell "<prefix>//" is not kept inside "<prefix>/**", which never matches such a name', () => {
    // apparmor_parser's DFA: "/tmp/**" does not match "/tmp//etc/shadow", "/tmp/[^x]etc/shadow" does.
    const r = merge(fs([], [], ['/tmp/**']), fs([], [], ['/tmp/[^x]etc/shadow', '/tmp/?etc/shadow']));
    assert.deepEqual(files(r.profile), { readOnlyPaths: [], writeOnlyPaths: [], readWritePaths: ['/tmp/?etc/shadow'] });
  });

  it('filesystem: rw ∩ ro = ro', () => {
    const r = merge(fs(['/etc/hosts']), fs([], [], ['/etc/hosts']));
    assert.deepEqual(files(r.profile), { readOnlyPaths: ['/etc/hosts'], writeOnlyPaths: [], readWritePaths: [] });
    assert.equal(r.constrained.length, 1);
    assert.match(formatAppArmorConstraint(r.constrained[0]!), /readWritePaths \/etc\/hosts: artifact rw, effective r/);
  });

  it('filesystem: rw ∩ wo = wo', () => {
    const r = merge(fs([], ['/var/log/app']), fs([], [], ['/var/log/app']));
    assert.deepEqual(files(r.profile).writeOnlyPaths, ['/var/log/app']);
  });

  it('filesystem: ro ∩ wo = dropped', () => {
    const r = merge(fs(['/data']), fs([], ['/data']));
    assert.deepEqual(files(r.profile), { readOnlyPaths: [], writeOnlyPaths: [], readWritePaths: [] });
    assert.deepEqual(r.constrained, [{ kind: 'path', list: 'writeOnlyPaths', path: '/data', artifact: 'w', effective: 'none', by: 'baseline' }]);
  });

  it('filesystem: rw ∩ rw = rw, and a path only one side lists is dropped', () => {
    const r = merge(fs([], [], ['/a', '/b']), fs([], [], ['/a', '/c']));
    assert.deepEqual(files(r.profile).readWritePaths, ['/a']);
    assert.deepEqual(
      r.constrained.map((c) => (c.kind === 'path' ? c.path : '')),
      ['/c'],
    );
  });

  it('globs: a literal survives when the other side’s glob matches it', () => {
    const r = merge(fs(['/etc/*.conf']), fs([], [], ['/etc/resolv.conf', '/etc/passwd']));
    assert.deepEqual(files(r.profile).readOnlyPaths, ['/etc/resolv.conf']);
    const r2 = merge(fs([], [], ['/etc/passwd']), fs(['/etc/**']));
    assert.deepEqual(files(r2.profile).readOnlyPaths, ['/etc/passwd'], 'baseline literal kept when the artifact glob covers it');
  });

  it('globs: identical globs survive with the shared bits', () => {
    const r = merge(fs([], [], ['/tmp/*.log']), fs(['/tmp/*.log']));
    assert.deepEqual(files(r.profile).readOnlyPaths, ['/tmp/*.log']);
  });

  it('globs: one narrows the other’s prefix/** (the narrower is kept)', () => {
    const r = merge(fs([], [], ['/etc/**']), fs(['/etc/*.conf', '/etc/foo/*.conf']));
    assert.deepEqual(files(r.profile).readOnlyPaths, ['/etc/*.conf', '/etc/foo/*.conf']);
    const r2 = merge(fs(['/var/lib/app/*.db']), fs([], [], ['/var/**']));
    assert.deepEqual(files(r2.profile).readOnlyPaths, ['/var/lib/app/*.db']);
    const c = r2.constrained[0];
    assert.ok(c?.kind === 'path');
    assert.deepEqual(c.narrowedTo, [{ path: '/var/lib/app/*.db', access: 'r' }]);
  });

  it('globs: overlapping globs that are neither identical nor narrowing intersect to nothing', () => {
    const r = merge(fs(['/etc/*']), fs(['/etc/*.conf']));
    assert.deepEqual(files(r.profile).readOnlyPaths, []);
    // "<prefix>/**" needs a byte after the prefix, so a glob that can match the prefix itself is not inside it
    const r2 = merge(fs(['/etc/**']), fs(['/etc/{,**}']));
    assert.deepEqual(files(r2.profile).readOnlyPaths, []);
  });

  it('globs: * does not cross "/", ** does; a component-filling star needs a byte', () => {
    const r = merge(fs(['/srv/*']), fs(['/srv/a', '/srv/a/b', '/srv/']));
    assert.deepEqual(files(r.profile).readOnlyPaths, ['/srv/a']);
    const r2 = merge(fs(['/srv/**']), fs(['/srv/a', '/srv/a/b', '/srv/']));
    assert.deepEqual(files(r2.profile).readOnlyPaths, ['/srv/a', '/srv/a/b']);
  });

  it('globs: ? [..] and {a,b} match as apparmor_parser does', () => {
    const r = merge(fs(['/d/?', '/e/[a-c]x', '/f/{x,y/z}']), fs(['/d/a', '/d/ab', '/e/bx', '/e/dx', '/f/x', '/f/y/z', '/f/y']));
    assert.deepEqual(files(r.profile).readOnlyPaths, ['/d/a', '/e/bx', '/f/x', '/f/y/z']);
  });

  it('bits from several matching entries are ORed', () => {
    const r = merge(fs(['/etc/**'], ['/etc/app.conf']), fs([], [], ['/etc/app.conf']));
    assert.deepEqual(files(r.profile).readWritePaths, ['/etc/app.conf']);
  });

  it('executables and libraries: path intersection', () => {
    const r = merge(
      { executable: { allowedExecutables: ['/usr/bin/*', '/bin/sh'], allowedLibraries: ['/usr/lib/**'] } },
      { executable: { allowedExecutables: ['/usr/bin/env', '/tmp/x', '/bin/sh'], allowedLibraries: ['/usr/lib/x86_64-linux-gnu/*.so*', '/opt/lib.so'] } },
    );
    assert.deepEqual(r.profile.executable, { allowedExecutables: ['/bin/sh', '/usr/bin/env'], allowedLibraries: ['/usr/lib/x86_64-linux-gnu/*.so*'] });
    assert.deepEqual(
      r.constrained.map((c) => (c.kind === 'path' ? `${c.list} ${c.path}` : c.kind)),
      ['allowedExecutables /tmp/x', 'allowedLibraries /opt/lib.so'],
    );
  });

  it('nil vs empty: an omitted section, list or boolean permits nothing (safer than "unspecified")', () => {
    const everything: AppArmorProfile = {
      executable: { allowedExecutables: ['/**'], allowedLibraries: ['/**'] },
      filesystem: { readWritePaths: ['/**'] },
      network: { allowRaw: true, allowedProtocols: { allowTcp: true, allowUdp: true } },
      capability: { allowedCapabilities: ['CHOWN'] },
    };
    const empty = intersectAppArmor(everything, {});
    assert.deepEqual(empty.profile, {
      executable: { allowedExecutables: [], allowedLibraries: [] },
      filesystem: { readOnlyPaths: [], writeOnlyPaths: [], readWritePaths: [] },
      network: { allowRaw: false, allowedProtocols: { allowTcp: false, allowUdp: false } },
      capability: { allowedCapabilities: [] },
    });
    // ...and the same from the baseline's side: an artifact cannot gain what the baseline omits.
    assert.deepEqual(intersectAppArmor({}, everything).profile, empty.profile);
    // explicit empty equals omitted
    assert.deepEqual(intersectAppArmor(everything, { network: { allowedProtocols: {} }, capability: { allowedCapabilities: [] } }).profile, empty.profile);
  });

  it('output is deterministic and canonical: equal inputs give identical bytes and name', () => {
    const a: AppArmorProfile = { filesystem: { readOnlyPaths: ['/b', '/a', '/é', '/z'] }, capability: { allowedCapabilities: ['kill', 'CHOWN'] } };
    const b: AppArmorProfile = { filesystem: { readOnlyPaths: ['/z', '/é', '/a', '/b'] }, capability: { allowedCapabilities: ['chown', 'KILL'] } };
    const base: AppArmorProfile = { filesystem: { readOnlyPaths: ['/**'] }, capability: { allowedCapabilities: ['CHOWN', 'KILL'] } };
    const ra = intersectAppArmor(base, a);
    const rb = intersectAppArmor(base, b);
    assert.deepEqual(ra.bytes, rb.bytes);
    assert.equal(ra.digest, rb.digest);
    assert.equal(appArmorProfileName(ra.bytes, 'a'.repeat(64)), appArmorProfileName(rb.bytes, 'a'.repeat(64)), 'equal inputs, one name');
    assert.deepEqual(ra.profile.filesystem.readOnlyPaths, ['/a', '/b', '/z', '/é']);
    assert.equal(
      ra.bytes.toString(),
      '{"executable":{"allowedExecutables":[],"allowedLibraries":[]},"filesystem":{"readOnlyPaths":["/a","/b","/z","/é"],"writeOnlyPaths":[],"readWritePaths":[]},"network":{"allowRaw":false,"allowedProtocols":{"allowTcp":false,"allowUdp":false}},"capability":{"allowedCapabilities":["CHOWN","KILL"]}}',
    );
  });

  it('intersecting a profile with itself keeps it (idempotent)', () => {
    const p: AppArmorProfile = {
      executable: { allowedExecutables: ['/usr/bin/*'], allowedLibraries: ['/lib/**'] },
      filesystem: { readOnlyPaths: ['/etc/**'], writeOnlyPaths: ['/var/log/x'], readWritePaths: ['/tmp/{a,b}*'] },
      network: { allowRaw: false, allowedProtocols: { allowTcp: true, allowUdp: false } },
      capability: { allowedCapabilities: ['CHOWN'] },
    };
    const r = intersectAppArmor(p, p);
    assert.deepEqual(r.constrained, []);
    assert.deepEqual(intersectAppArmor(r.profile, r.profile).bytes, r.bytes);
  });

  it('inputs built to blow up glob matching are refused deterministically (a budget, not a clock)', () => {
    const glob = (i: number) => '/t/' + '*a'.repeat(55) + '{' + Array.from({ length: 50 }, (_, k) => `x${k}`).join(',') + '}' + i;
    const lit = (i: number) => '/t/' + 'a'.repeat(190) + i;
    const p: AppArmorProfile = { filesystem: { readWritePaths: [...Array.from({ length: 512 }, (_, i) => glob(i)), ...Array.from({ length: 512 }, (_, i) => lit(i))] } };
    assert.throws(() => intersectAppArmor(p, p), spokeError({ code: 'SecurityProfileInvalid', reason: 'LIMIT_EXCEEDED' }));
    // the same artifact against an ordinary baseline merges
    const r = intersectAppArmor({ filesystem: { readWritePaths: ['/t/**', '/**'] } }, p);
    assert.equal(r.profile.filesystem.readWritePaths.length, 1024);
  });

  it('invalid inputs are refused, the baseline named as such', () => {
    assert.throws(
      () => intersectAppArmor(fs(['relative']), fs()),
      (e: unknown) => spokeError({ code: 'SecurityProfileInvalid', reason: 'PROFILE_INVALID' })(e) && (e as SpokeError).context.input === 'baseline' && (e as SpokeError).context.path === 'filesystem.readOnlyPaths[0]',
    );
    assert.throws(() => intersectAppArmor(fs(), fs(['/a', '/a'])), (e: unknown) => e instanceof SpokeError && e.context.path === 'filesystem.readOnlyPaths[1]');
    assert.throws(() => intersectAppArmor(null as unknown as AppArmorProfile, fs()), SpokeError);
  });
});
