// Property: the merged profile never grants what an input denies. Access is modelled as a function
// (name × {read, write, exec, mmap}) → bool through the same glob matcher AppArmor semantics use,
// and checked on generated names; capabilities and network likewise.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { compileGlob, intersectAppArmor, pathProblem, type AppArmorProfile } from '../../../src/profiles/apparmor/index.js';

type Access = 'r' | 'w' | 'x' | 'm';

function grants(p: AppArmorProfile, name: string, access: Access): boolean {
  const lists: (string[] | undefined)[] =
    access === 'r'
      ? [p.filesystem?.readOnlyPaths, p.filesystem?.readWritePaths]
      : access === 'w'
        ? [p.filesystem?.writeOnlyPaths, p.filesystem?.readWritePaths]
        : access === 'x'
          ? [p.executable?.allowedExecutables]
          : [p.executable?.allowedLibraries];
  return lists.some((l) => (l ?? []).some((pattern) => compileGlob(pattern).matches(name)));
}

const caps = (p: AppArmorProfile) => new Set((p.capability?.allowedCapabilities ?? []).map((c) => c.toUpperCase()));

const segment = fc.constantFrom('a', 'b', 'ab', 'etc', 'x.conf', '*', '**', '?', '*.conf', '[ab]', '[^a]', '{a,b}', '{a,}', '{a,b/c}', 'a*', '{*,b}');
const pattern = fc
  .tuple(fc.array(segment, { minLength: 1, maxLength: 4 }), fc.boolean())
  .map(([segs, slash]) => '/' + segs.join('/') + (slash ? '/' : ''))
  .filter((p) => pathProblem(p) === undefined);
const nameArb = fc
  .tuple(fc.array(fc.constantFrom('a', 'b', 'ab', 'etc', 'x.conf', '.conf', 'c', 'b/c'), { minLength: 0, maxLength: 4 }), fc.boolean())
  .map(([segs, slash]) => '/' + segs.join('/') + (slash && segs.length > 0 ? '/' : ''));
const capName = fc.constantFrom('chown', 'CHOWN', 'kill', 'Sys_Admin', 'net_raw', 'NET_BIND_SERVICE');

const profileArb: fc.Arbitrary<AppArmorProfile> = fc
  .record({
    fs: fc.uniqueArray(fc.tuple(pattern, fc.constantFrom('readOnlyPaths', 'writeOnlyPaths', 'readWritePaths')), { maxLength: 6, selector: ([p]) => p }),
    execs: fc.uniqueArray(pattern, { maxLength: 3 }),
    libs: fc.uniqueArray(pattern, { maxLength: 3 }),
    caps: fc.uniqueArray(capName, { maxLength: 4, selector: (c) => c.toUpperCase() }),
    raw: fc.option(fc.boolean(), { nil: undefined }),
    tcp: fc.option(fc.boolean(), { nil: undefined }),
    udp: fc.option(fc.boolean(), { nil: undefined }),
    omit: fc.constantFrom('none', 'filesystem', 'executable', 'network', 'capability'),
  })
  .map((g) => {
    const p: AppArmorProfile = {
      filesystem: { readOnlyPaths: [], writeOnlyPaths: [], readWritePaths: [] },
      executable: { allowedExecutables: g.execs, allowedLibraries: g.libs },
      network: { allowRaw: g.raw, allowedProtocols: { allowTcp: g.tcp, allowUdp: g.udp } },
      capability: { allowedCapabilities: g.caps },
    };
    for (const [path, list] of g.fs) p.filesystem![list]!.push(path);
    if (g.omit !== 'none') delete p[g.omit];
    return p;
  });

describe('AppArmor merge properties', () => {
  it('the merged profile never grants what the baseline or the artifact denies', () => {
    fc.assert(
      fc.property(profileArb, profileArb, fc.array(nameArb, { minLength: 1, maxLength: 12 }), (baseline, artifact, names) => {
        const { profile } = intersectAppArmor(baseline, artifact);
        for (const name of names) {
          for (const access of ['r', 'w', 'x', 'm'] as const) {
            if (grants(profile, name, access)) {
              assert.ok(grants(baseline, name, access), `${access} ${name}: granted but the baseline denies it`);
              assert.ok(grants(artifact, name, access), `${access} ${name}: granted but the artifact denies it`);
            }
          }
        }
        for (const c of profile.capability.allowedCapabilities) {
          assert.ok(caps(baseline).has(c) && caps(artifact).has(c), c);
        }
        const n = profile.network;
        if (n.allowRaw) assert.ok(baseline.network?.allowRaw === true && artifact.network?.allowRaw === true);
        if (n.allowedProtocols.allowTcp) assert.ok(baseline.network?.allowedProtocols?.allowTcp === true && artifact.network?.allowedProtocols?.allowTcp === true);
        if (n.allowedProtocols.allowUdp) assert.ok(baseline.network?.allowedProtocols?.allowUdp === true && artifact.network?.allowedProtocols?.allowUdp === true);
      }),
      { numRuns: 1500 },
    );
  });

  it('intersecting a profile with itself grants exactly what it grants (the model is not vacuous)', () => {
    fc.assert(
      fc.property(profileArb, fc.array(nameArb, { minLength: 1, maxLength: 12 }), (p, names) => {
        const { profile, constrained } = intersectAppArmor(p, p);
        assert.deepEqual(constrained, []);
        for (const name of names) for (const access of ['r', 'w', 'x', 'm'] as const) assert.equal(grants(profile, name, access), grants(p, name, access), `${access} ${name}`);
      }),
      { numRuns: 500 },
    );
  });

  it('the merge is the same whichever way round the two inputs come (as to what it grants)', () => {
    fc.assert(
      fc.property(profileArb, profileArb, fc.array(nameArb, { minLength: 1, maxLength: 12 }), (a, b, names) => {
        const ab = intersectAppArmor(a, b).profile;
        const ba = intersectAppArmor(b, a).profile;
        assert.deepEqual(ab, ba);
        for (const name of names) for (const access of ['r', 'w', 'x', 'm'] as const) assert.equal(grants(ab, name, access), grants(ba, name, access));
      }),
      { numRuns: 500 },
    );
  });

  it('every constraint names something the artifact had and the effective profile lacks', () => {
    fc.assert(
      fc.property(profileArb, profileArb, (baseline, artifact) => {
        const { profile, constrained } = intersectAppArmor(baseline, artifact);
        for (const c of constrained) {
          if (c.kind === 'capability') assert.ok(caps(artifact).has(c.capability) && !profile.capability.allowedCapabilities.includes(c.capability));
          if (c.kind === 'path') assert.notEqual(c.artifact, c.effective);
        }
      }),
      { numRuns: 500 },
    );
  });
});
