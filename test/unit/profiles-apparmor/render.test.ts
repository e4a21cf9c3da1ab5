// Rendering: deterministic text, the runtime template, and no attacker-controlled syntax ever.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { SpokeError } from '../../../src/core/errors.js';
import { throwsWith } from '../../helpers/assert.js';
import {
  appArmorProfileName,
  intersectAppArmor,
  pathProblem,
  renderAppArmor,
  RENDER_TEMPLATE_VERSION,
  validateAppArmorArtifact,
  type AppArmorProfile,
} from '../../../src/profiles/apparmor/index.js';

const NAME = 'spoke-0123456789abcdef';
/** A parser's identity (src/apparmor/identity.ts): any 64 hex digits here. */
const PARSER = 'a'.repeat(64);
const PATH_RULE = /^ {2}"([^"\\\n\r#]*)" (rix|rm|r|wk|rwk),$/;

/** The lines that are not a structured path rule or a structured-section comment. */
function skeleton(text: string): string[] {
  return text.split('\n').filter((l) => !PATH_RULE.test(l) && l !== '  # files' && l !== '  # executables and libraries');
}

const INJECTIONS = [
  '/tmp/x" rw,\n  capability sys_admin,\n  "/y',
  '/tmp/x rw,\n  /** rwlkmix',
  '/tmp/x,\n}\nprofile evil flags=(unconfined) {\n',
  '/tmp/x\r\n  capability sys_admin',
  '/tmp/x\u2028capability sys_admin,',
  '/tmp/x # comment',
  '/tmp/x\\" rw,',
  '/tmp/@{HOME}/x',
  '/tmp/\\x0a  capability sys_admin,',
  '/tmp/x\u0000',
  '/tmp/{a,b',
  '/tmp/x}',
  '/tmp/x,',
  '/tmp/[!a]',
  '/tmp/../../etc/shadow',
];

describe('renderAppArmor', () => {
  const profile: AppArmorProfile = {
    executable: { allowedExecutables: ['/usr/bin/app'], allowedLibraries: ['/lib/**'] },
    filesystem: { readOnlyPaths: ['/etc/**'], writeOnlyPaths: ['/var/log/app.log'], readWritePaths: ['/tmp/**', '/a b'] },
    network: { allowRaw: true, allowedProtocols: { allowTcp: true, allowUdp: false } },
    capability: { allowedCapabilities: ['NET_BIND_SERVICE', 'chown'] },
  };

  it('writes each structured rule, sorted, quoted, capabilities lower-case', () => {
    const text = renderAppArmor(profile, NAME);
    assert.ok(text.includes(`profile ${NAME} flags=(attach_disconnected,mediate_deleted) {\n`));
    const rules = text.split('\n').filter((l) => PATH_RULE.test(l));
    assert.deepEqual(rules, ['  "/usr/bin/app" rix,', '  "/lib/**" rm,', '  "/a b" rwk,', '  "/etc/**" r,', '  "/tmp/**" rwk,', '  "/var/log/app.log" wk,']);
    assert.ok(text.includes('  capability chown,\n  capability net_bind_service,\n'));
    assert.ok(text.includes('  network tcp,\n'));
    assert.ok(!text.includes('network udp'));
    assert.ok(text.includes('  network inet raw,\n'));
    assert.ok(text.endsWith('}\n'));
  });

  it('carries the runtime template: signals, ptrace, mount denial, /proc and /sys denials', () => {
    const text = renderAppArmor({}, NAME);
    for (const rule of [
      'signal (receive) peer=unconfined,',
      `signal (send,receive) peer=${NAME},`,
      `ptrace (read,readby,trace,tracedby) peer=${NAME},`,
      'deny mount,',
      'deny umount,',
      'deny pivot_root,',
      'deny /proc/sysrq-trigger rwklx,',
      // containerd's default: no write to a file directly under /proc, nor under its
      // directories other than a process's (/proc/irq, /proc/acpi, /proc/bus, …) and sys.
      'deny /proc/* w,',
      'deny /proc/{[^1-9],[^1-9][^0-9],[^1-9s][^0-9y][^0-9s],[^1-9][^0-9][^0-9][^0-9/]*}/** w,',
      'deny /proc/*/task/*/attr/** wl,',
      'deny /sys/** wklx,',
      // containerd's RuntimeDefault denies the RAPL energy counters (CVE-2020-8694, Platypus):
      // a baseline granting /** read must not give them back.
      'deny /sys/devices/virtual/powercap/** rwklx,',
    ]) {
      assert.ok(text.includes(`  ${rule}\n`), rule);
    }
    assert.ok(!/^\s*(file|capability|network (tcp|udp|inet))/m.test(text), 'an empty profile grants no file access, capability or inet socket');
  });

  it('is deterministic: input order does not matter', () => {
    const shuffled: AppArmorProfile = {
      capability: { allowedCapabilities: ['chown', 'NET_BIND_SERVICE'] },
      network: profile.network,
      filesystem: { readWritePaths: ['/a b', '/tmp/**'], writeOnlyPaths: ['/var/log/app.log'], readOnlyPaths: ['/etc/**'] },
      executable: profile.executable,
    };
    assert.equal(renderAppArmor(shuffled, NAME), renderAppArmor(profile, NAME));
  });

  it('renders a merged profile under its generated name', () => {
    const r = intersectAppArmor(profile, profile);
    const name = appArmorProfileName(r.bytes, PARSER);
    assert.match(renderAppArmor(r.profile, name), new RegExp(`^profile ${name} `, 'm'));
  });

  it('names a profile by its effective bytes, the render template and the parser: a template or parser that changes what the same input loads as never replaces it under a loaded name', () => {
    const r = intersectAppArmor(profile, profile);
    const name = appArmorProfileName(r.bytes, PARSER);
    assert.match(name, /^spoke-[0-9a-f]{64}$/);
    assert.equal(appArmorProfileName(r.bytes, PARSER, RENDER_TEMPLATE_VERSION), name);
    assert.notEqual(appArmorProfileName(r.bytes, PARSER, RENDER_TEMPLATE_VERSION + 1), name);
    assert.notEqual(appArmorProfileName(r.bytes, 'b'.repeat(64)), name);
    assert.notEqual(appArmorProfileName(intersectAppArmor(profile, { filesystem: { readOnlyPaths: ['/x'] } }).bytes, PARSER), name);
    // Only a parser identity: 64 hex digits, so that nothing it holds can shift the bytes hashed after it.
    for (const bad of ['', 'A'.repeat(64), `${'a'.repeat(64)}\n`, 'a'.repeat(63)]) throwsWith(() => appArmorProfileName(r.bytes, bad), { code: 'Internal', reason: 'INVARIANT' });
  });

  it('renders an effective profile larger than one input may be (count limits are for inputs)', () => {
    const many = (p: string) => Array.from({ length: 1000 }, (_, i) => `/${p}/f${i}`);
    const baseline: AppArmorProfile = { filesystem: { readOnlyPaths: [...many('a'), '/b/**'] } };
    const artifact: AppArmorProfile = { filesystem: { readOnlyPaths: [...many('b'), '/a/**'] } };
    const r = intersectAppArmor(baseline, artifact);
    assert.equal(r.profile.filesystem.readOnlyPaths.length, 2000);
    assert.equal(renderAppArmor(r.profile, NAME).split('\n').filter((l) => PATH_RULE.test(l)).length, 2000);
  });

  it('refuses bad names', () => {
    for (const name of ['', 'a b', 'x{', 'x\n', '-x', 'a'.repeat(129), 'x,y']) {
      assert.throws(() => renderAppArmor({}, name), (e: unknown) => e instanceof SpokeError && e.code === 'InvalidArgument', JSON.stringify(name));
    }
  });

  for (const evil of INJECTIONS) {
    it(`never renders an injection attempt: ${JSON.stringify(evil)}`, () => {
      for (const list of ['readOnlyPaths', 'writeOnlyPaths', 'readWritePaths'] as const) {
        assert.throws(() => renderAppArmor({ filesystem: { [list]: [evil] } }, NAME), SpokeError);
      }
      assert.throws(() => renderAppArmor({ executable: { allowedExecutables: [evil] } }, NAME), SpokeError);
      assert.throws(() => renderAppArmor({ executable: { allowedLibraries: [evil] } }, NAME), SpokeError);
      assert.throws(() => intersectAppArmor({ filesystem: { readOnlyPaths: ['/**'] } }, { filesystem: { readOnlyPaths: [evil] } }), SpokeError);
    });
  }

  for (const evil of ['sys_admin,\n  file', 'chown, capability sys_admin', 'CAP_SYS_ADMIN', 'all', 'sys_admin#']) {
    it(`never renders a capability injection: ${JSON.stringify(evil)}`, () => {
      assert.throws(() => renderAppArmor({ capability: { allowedCapabilities: [evil] } }, NAME), SpokeError);
    });
  }

  it('property: any string either is refused or becomes exactly one quoted token of one rule', () => {
    const chars = fc.constantFrom('a', '/', ' ', '"', '\\', ',', '\n', '\r', '#', '{', '}', '[', ']', '*', '?', '@', '!', '^', '-', '.', 'é', '\u2028', '\u0000', '\t', '$', '=', '(', ')');
    const path = fc.array(chars, { maxLength: 16 }).map((cs) => '/' + cs.join(''));
    const base = skeleton(renderAppArmor({}, NAME));
    fc.assert(
      fc.property(fc.uniqueArray(path, { maxLength: 6 }), fc.constantFrom('readOnlyPaths', 'writeOnlyPaths', 'readWritePaths', 'allowedExecutables', 'allowedLibraries'), (paths, list) => {
        const p: AppArmorProfile = list === 'allowedExecutables' || list === 'allowedLibraries' ? { executable: { [list]: paths } } : { filesystem: { [list]: paths } };
        const ok = paths.every((x) => pathProblem(x) === undefined);
        if (!ok) {
          assert.throws(() => renderAppArmor(p, NAME), SpokeError);
          return;
        }
        validateAppArmorArtifact(p);
        const text = renderAppArmor(p, NAME);
        assert.deepEqual(skeleton(text), base, 'nothing but path rules differ from the empty profile');
        const rendered = text
          .split('\n')
          .map((l) => PATH_RULE.exec(l)?.[1])
          .filter((x): x is string => x !== undefined);
        assert.deepEqual([...rendered].sort(), [...paths].sort());
      }),
      { numRuns: 3000 },
    );
  });
});
