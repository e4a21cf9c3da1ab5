// Render → the real apparmor_parser: every rendered profile compiles (-Q, no kernel load), a
// deliberately broken one is refused. Load/unload need kernel AppArmor and root; elsewhere they
// must fail clearly (FailedPrecondition), never silently succeed.

import assert from 'node:assert/strict';
import { spoke } from '../helpers/cli.js';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { spawnSync } from 'node:child_process';
import { identifyParser } from '../../src/apparmor/identity.js';
import { checkWithParser, findApparmorParser, kernelHasAppArmor, loadProfile, PARSER_ADDRESS_SPACE_BYTES, PARSER_OOM_SCORE_ADJ, runParser, unloadProfile } from '../../src/apparmor/parser.js';
import { SpokeError } from '../../src/core/errors.js';
import {
  appArmorProfileName,
  intersectAppArmor,
  LINUX_CAPABILITIES,
  MAX_ARTIFACT_PATHS,
  MAX_TOTAL_PATH_BYTES,
  pathProblem,
  renderAppArmor,
  validateAppArmorArtifactBytes,
  type AppArmorProfile,
} from '../../src/profiles/apparmor/index.js';
import { rejectsWith } from '../helpers/assert.js';
import { requireTool } from '../helpers/skip.js';
import { writeFakeParser } from '../helpers/fake-parser.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BASELINE_FILE = join(ROOT, 'policy/apparmor-baseline.json');
const FEATURES = '/usr/share/apparmor-features/features';
const parser = findApparmorParser();
const skip = requireTool(parser === undefined ? 'apparmor_parser is not installed' : undefined);

const baseline = () => validateAppArmorArtifactBytes(readFileSync(BASELINE_FILE));
/** The name the shim loads an effective profile under with this machine's parser. */
const shimName = async (bytes: Uint8Array) => appArmorProfileName(bytes, (await identifyParser()).id);

/** The packaged features file without its `block` (e.g. network mediation), written to a temporary directory. */
function featuresWithout(block: string): { file: string; remove: () => void } {
  const features = readFileSync(FEATURES, 'utf8');
  const start = features.indexOf(`${block} {`);
  assert.ok(start >= 0, `the packaged features file has ${block}`);
  let depth = 0;
  let end = start;
  for (; end < features.length; end++) {
    if (features[end] === '{') depth++;
    else if (features[end] === '}' && --depth === 0) break;
  }
  const dir = mkdtempSync(join(tmpdir(), 'spoke-aa-features-'));
  const file = join(dir, 'features');
  writeFileSync(file, features.slice(0, start) + features.slice(end + 1));
  return { file, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

const sample: AppArmorProfile = {
  executable: { allowedExecutables: ['/usr/bin/app', '/tmp/dropper', '/usr/local/bin/*'], allowedLibraries: ['/usr/lib/x86_64-linux-gnu/*.so*', '/lib/**'] },
  filesystem: {
    readOnlyPaths: ['/etc/{hosts,resolv.conf,nsswitch.conf}', '/proc/[0-9]*/status', '/sys/fs/cgroup/**'],
    writeOnlyPaths: ['/var/log/app/*.log'],
    readWritePaths: ['/tmp/**', '/etc/shadow', '/data/app/', '/dev/null', '/srv/a b/[^.]*'],
  },
  network: { allowRaw: true, allowedProtocols: { allowTcp: true, allowUdp: true } },
  capability: { allowedCapabilities: ['chown', 'net_bind_service', 'SYS_ADMIN', 'bpf'] },
};

async function accepted(text: string, features = false): Promise<string[]> {
  try {
    return (await checkWithParser(text, features && existsSync(FEATURES) ? { featuresFile: FEATURES } : {})).warnings;
  } catch (e) {
    assert.fail(`apparmor_parser refused:\n${text}\n${(e as Error).message}`);
  }
}

describe('apparmor_parser accepts every rendered profile', { skip }, () => {
  it('the shipped baseline, rendered on its own', async () => {
    const r = intersectAppArmor(baseline(), baseline());
    assert.deepEqual(r.constrained, []);
    await accepted(renderAppArmor(r.profile, await shimName(r.bytes)));
    await accepted(renderAppArmor(r.profile, await shimName(r.bytes)), true);
  });

  it('rule classes the features do not enforce come back as warnings, once each (network without network mediation)', async () => {
    // The features file the parser compiles against here, without its network block.
    const { file: featuresFile, remove } = featuresWithout('network_v8');
    const text = renderAppArmor({ network: { allowedProtocols: { allowTcp: true } } }, 'spoke-net');
    const withNetwork = await checkWithParser(text, { featuresFile: '/usr/share/apparmor-features/features' });
    assert.ok(!withNetwork.warnings.some((w) => /network rules not enforced/.test(w)), withNetwork.warnings.join('\n'));
    const without = await checkWithParser(text, { featuresFile });
    assert.equal(without.warnings.filter((w) => /network rules not enforced/.test(w)).length, 1, without.warnings.join('\n'));
    remove();
  });

  it('a merged profile (baseline ∩ artifact), with and without an explicit features file', async () => {
    const r = intersectAppArmor(baseline(), sample);
    assert.ok(r.constrained.length > 0);
    const text = renderAppArmor(r.profile, await shimName(r.bytes));
    await accepted(text);
    const warnings = await accepted(text, true);
    assert.ok(warnings.every((w) => w.startsWith('Warning')));
  });

  it('the artifact rendered raw, every capability apparmor knows, an empty profile', async () => {
    await accepted(renderAppArmor(sample, 'spoke-raw'));
    await accepted(renderAppArmor({ capability: { allowedCapabilities: [...LINUX_CAPABILITIES] } }, 'spoke-caps'));
    await accepted(renderAppArmor({}, 'spoke-empty'));
  });

  it('every character the validator admits, in a literal path', async () => {
    const admitted: string[] = [];
    for (let c = 0x20; c < 0x7f; c++) {
      const ch = String.fromCharCode(c);
      if (pathProblem(`/x${ch}y`) === undefined) admitted.push(`/x${ch}y`);
    }
    admitted.push('/caf\u00e9', '/\u{1f600}', '/\u4e2d\u6587');
    assert.ok(admitted.length > 80, `${admitted.length} admitted`);
    await accepted(renderAppArmor({ filesystem: { readOnlyPaths: admitted } }, 'spoke-chars'));
  });

  it('generated profiles', async () => {
    const segment = fc.constantFrom('a', 'bin', 'x.conf', '*', '**', '?', '[a-z]', '[^.]', '{a,b}', '{a,b/c,}', 'é', 'a b', 'x$y', 'p(q)', 'a+b', 'a^b', '~');
    const pattern = fc
      .array(segment, { minLength: 1, maxLength: 5 })
      .map((s) => '/' + s.join('/'))
      .filter((p) => pathProblem(p) === undefined);
    const profile = fc.record({
      executable: fc.record({ allowedExecutables: fc.uniqueArray(pattern, { maxLength: 4 }), allowedLibraries: fc.uniqueArray(pattern, { maxLength: 4 }) }),
      filesystem: fc.uniqueArray(fc.tuple(pattern, fc.constantFrom('readOnlyPaths', 'writeOnlyPaths', 'readWritePaths')), { maxLength: 10, selector: ([p]) => p }),
      network: fc.record({ allowRaw: fc.boolean(), allowedProtocols: fc.record({ allowTcp: fc.boolean(), allowUdp: fc.boolean() }) }),
      capability: fc.record({ allowedCapabilities: fc.uniqueArray(fc.constantFrom(...LINUX_CAPABILITIES), { maxLength: 6 }) }),
    });
    const samples = fc.sample(profile, { numRuns: 25, seed: 6061 });
    for (const g of samples) {
      const p: AppArmorProfile = { ...g, filesystem: { readOnlyPaths: [], writeOnlyPaths: [], readWritePaths: [] } };
      for (const [path, list] of g.filesystem) p.filesystem![list]!.push(path);
      const raw = renderAppArmor(p, 'spoke-generated');
      await accepted(raw);
      const r = intersectAppArmor(p, sample);
      await accepted(renderAppArmor(r.profile, await shimName(r.bytes)));
    }
  });
});

describe('apparmor_parser rejects broken policy', { skip }, () => {
  it('a rendered profile with a rule cut short is refused with the parser’s message', async () => {
    const text = renderAppArmor(sample, 'spoke-broken').replace('"/tmp/**" rwk,', '"/tmp/**" rwk');
    await assert.rejects(checkWithParser(text), (e: unknown) => {
      assert.ok(e instanceof SpokeError);
      assert.equal(e.code, 'SecurityProfileInvalid');
      assert.equal(e.reason, 'PROFILE_INVALID');
      assert.match(e.message, /AppArmor policy rejected: apparmor_parser exit \d+: .*(error|syntax)/i);
      return true;
    });
  });

  it('a compile that outlives its timeout is stopped, workers and all, and the call answers', { timeout: 60_000 }, async () => {
    // A pattern apparmor_parser 3.0 loops on, in little memory (docs/apparmor.md). It compiles in
    // a forked worker: killing only the process spawned left the worker running (and holding the
    // pipes, so the call never settled), for every retry of the create.
    const before = parserProcesses().map((p) => p.pid);
    await assert.rejects(checkWithParser('profile t {\n "/etc/x{,{b,},,}/" r,\n}\n', { timeoutMs: 2000 }), (e: unknown) => e instanceof SpokeError && e.reason === 'DEADLINE');
    // An orphaned worker is reparented to init; other tests' parsers have their test as parent.
    const orphans = parserProcesses().filter((p) => !before.includes(p.pid) && p.ppid === 1);
    assert.deepEqual(orphans, [], 'no parser process outlives the call');
  });

  it('the largest artifact of literal paths spoke admits compiles under the memory cap', { timeout: 120_000 }, async () => {
    // 1,024 paths of 255 bytes: MAX_ARTIFACT_PATHS paths, just under MAX_TOTAL_PATH_BYTES in all.
    const paths = Array.from({ length: MAX_ARTIFACT_PATHS }, (_, i) => `/usr/share/app/${i}/`.padEnd(Math.floor(MAX_TOTAL_PATH_BYTES / MAX_ARTIFACT_PATHS) - 1, 'x'));
    const merged = intersectAppArmor(baseline(), validateAppArmorArtifactBytes(Buffer.from(JSON.stringify({ filesystem: { readOnlyPaths: paths } }))));
    assert.equal(merged.profile.filesystem?.readOnlyPaths?.length, MAX_ARTIFACT_PATHS);
    await accepted(renderAppArmor(merged.profile, await shimName(merged.bytes)));
  });

  it('a text whose compile would take gigabytes stops at the memory cap: refused LIMIT_EXCEEDED, the cap in its context', async () => {
    // 200 paths of 20 letters joined by `**` (13 KB of artifact, every path inside the baseline's
    // `/**` read rule): uncapped, the parser grew to 1.6 GB within the 30 s timeout.
    let seed = 7;
    const letter = () => String.fromCharCode(97 + ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % 26));
    const paths = Array.from({ length: 200 }, () => `/x**${Array.from({ length: 20 }, letter).join('**')}`);
    const merged = intersectAppArmor(baseline(), validateAppArmorArtifactBytes(Buffer.from(JSON.stringify({ filesystem: { readOnlyPaths: paths } }))));
    assert.equal(merged.profile.filesystem?.readOnlyPaths?.length, 200, 'every path survives the merge');
    const text = renderAppArmor(merged.profile, await shimName(merged.bytes));
    await assert.rejects(checkWithParser(text), (e: unknown) => {
      assert.ok(e instanceof SpokeError, String(e));
      assert.equal(e.code, 'SecurityProfileInvalid');
      assert.equal(e.reason, 'LIMIT_EXCEEDED', e.message);
      assert.equal(e.context.limit, PARSER_ADDRESS_SPACE_BYTES);
      return true;
    });
  });

  it('unbalanced braces and unknown capabilities are refused', async () => {
    await assert.rejects(checkWithParser('profile spoke-x {\n  "/a/{b" r,\n}\n'), SpokeError);
    await assert.rejects(checkWithParser('profile spoke-x {\n  capability sys_everything,\n}\n'), SpokeError);
  });
});

// The parser's identity, which the shim's profile names cover (docs/apparmor.md#the-parser-in-the-name).
describe("apparmor_parser's identity", { skip }, () => {
  it('its version line as it prints it, the same at every read; what it compiles for is part of it', async () => {
    const printed = spawnSync(parser!, ['--version'], { encoding: 'utf8' }).stdout.split('\n', 1)[0]!;
    const a = await identifyParser();
    assert.equal(`AppArmor parser version ${a.version}`, printed);
    assert.equal(a.parser, parser);
    assert.match(a.id, /^[0-9a-f]{64}$/);
    assert.deepEqual(await identifyParser(), a, 'read again: the same identity');
    // The same binary compiling for other features (as another features file or parser.conf
    // pins, or another kernel offers) compiles the same text to another policy.
    const { file, remove } = featuresWithout('network_v8');
    try {
      const withNetwork = await identifyParser({ featuresFile: FEATURES });
      const without = await identifyParser({ featuresFile: file });
      assert.equal(without.version, withNetwork.version);
      assert.notEqual(without.id, withNetwork.id);
    } finally {
      remove();
    }
  });
});

describe('loading into the kernel', { skip }, () => {
  const kernel = kernelHasAppArmor();
  const root = process.getuid?.() === 0;

  it('without kernel AppArmor, load and unload fail clearly', { skip: kernel ? 'this kernel has AppArmor' : false }, async () => {
    const text = renderAppArmor({}, 'spoke-noload');
    await rejectsWith(loadProfile(text), { code: 'FailedPrecondition', reason: 'APPARMOR_UNAVAILABLE' });
    await rejectsWith(unloadProfile('spoke-noload'), { code: 'FailedPrecondition', reason: 'APPARMOR_UNAVAILABLE' });
  });

  it('with kernel AppArmor and root, a rendered profile loads, replaces and unloads', { skip: kernel && root ? false : 'needs kernel AppArmor and root' }, async () => {
    const r = intersectAppArmor(baseline(), sample);
    const name = await shimName(r.bytes);
    const text = renderAppArmor(r.profile, name);
    await loadProfile(text);
    await loadProfile(text); // --replace is idempotent
    assert.ok(readFileSync('/sys/kernel/security/apparmor/profiles', 'utf8').includes(name));
    await unloadProfile(name);
    assert.ok(!readFileSync('/sys/kernel/security/apparmor/profiles', 'utf8').includes(name));
  });

  it('unloadProfile refuses names that are not profile names', async () => {
    await assert.rejects(unloadProfile('x {\n}\nprofile y'), (e: unknown) => e instanceof SpokeError && e.code === 'InvalidArgument');
  });
});

// A stand-in apparmor_parser (a real executable that fails as the real one does) and a missing
// one: the failures carry their reasons on any machine, with or without AppArmor.
describe('apparmor_parser failures', () => {
  const dir = mkdtempSync(join(tmpdir(), 'spoke-aa-fake-'));
  const failing = join(dir, 'apparmor_parser');
  writeFileSync(failing, '#!/bin/sh\necho "AppArmor parser error at line 1: syntax error" >&2\nexit 1\n', { mode: 0o755 });
  const text = renderAppArmor({}, 'spoke-fake');

  it('the parser runs with its address space capped, the first a memory kill takes', async () => {
    const limits = join(dir, 'apparmor_parser_limits');
    writeFileSync(limits, '#!/bin/sh\ncat >/dev/null\ngrep "^Max address space" /proc/self/limits\ncat /proc/self/oom_score_adj\n', { mode: 0o755 });
    const run = await runParser([], '', { parser: limits });
    assert.equal(run.code, 0, run.stderr);
    const [limitLine, adj] = run.stdout.toString().trim().split('\n');
    assert.deepEqual(limitLine!.split(/\s+/).slice(3, 5), [String(PARSER_ADDRESS_SPACE_BYTES), String(PARSER_ADDRESS_SPACE_BYTES)]);
    assert.equal(adj, String(PARSER_OOM_SCORE_ADJ));
  });

  it('a prlimit or choom that fails (a limit or score the node refuses) ran no parser: APPARMOR_FAILED, never a refusal of the text', async () => {
    for (const tool of ['prlimit', 'choom']) {
      const tools = join(dir, `failing-${tool}`);
      mkdirSync(tools, { recursive: true });
      for (const other of ['prlimit', 'choom']) {
        // The working one runs what follows its `--`, as the real ones do.
        const body = other === tool ? `echo "${tool}: failed to set the limit: Operation not permitted" >&2\nexit 1` : 'while [ "$1" != "--" ]; do shift; done\nshift\nexec "$@"';
        writeFileSync(join(tools, other), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
      }
      await rejectsWith(checkWithParser(text, { parser: failing, utilLinuxDirs: [tools] }), { code: 'Internal', reason: 'APPARMOR_FAILED' });
    }
  });

  it('a parser that refuses the text: PROFILE_INVALID; one that cannot run: APPARMOR_UNAVAILABLE', async () => {
    await rejectsWith(checkWithParser(text, { parser: failing }), { code: 'SecurityProfileInvalid', reason: 'PROFILE_INVALID' });
    await rejectsWith(checkWithParser(text, { parser: join(dir, 'missing') }), { code: 'FailedPrecondition', reason: 'APPARMOR_UNAVAILABLE' });
  });

  it('a load the parser accepts with warnings resolves with them, each once: the rule classes the kernel does not enforce', async () => {
    const warning = join(dir, 'apparmor_parser_warns');
    writeFileSync(warning, '#!/bin/sh\ncat >/dev/null\nfor i in 1 2 3; do echo "Warning from profile spoke-fake (stdin): signal rules not enforced" >&2; done\nexit 0\n', { mode: 0o755 });
    const securityfs = join(dir, 'securityfs');
    mkdirSync(securityfs, { recursive: true });
    assert.deepEqual((await loadProfile(text, { parser: warning, securityfs })).warnings, ['Warning from profile spoke-fake (stdin): signal rules not enforced']);
  });

  it('a parser that cannot compile the identity probe, compiles it to more than its output bound, is missing or is no file, is not identified: APPARMOR_UNAVAILABLE', async () => {
    for (const [what, compiled] of [
      ['refuses it', "echo 'AppArmor parser error: unknown feature' >&2; exit 1"],
      ['too much', 'head -c 70000 /dev/zero'],
    ]) {
      const probe = join(dir, `apparmor_parser_probe_${what.replace(' ', '_')}`);
      writeFakeParser(probe, 'exit 0', { compiled });
      await rejectsWith(identifyParser({ parser: probe }), { code: 'FailedPrecondition', reason: 'APPARMOR_UNAVAILABLE' });
    }
    // Missing, or no regular file (whose bytes could go on for ever).
    for (const notOne of [join(dir, 'missing'), dir]) await rejectsWith(identifyParser({ parser: notOne }), { code: 'FailedPrecondition', reason: 'APPARMOR_UNAVAILABLE' });
  });

  it('an unload of a profile the kernel does not hold is NotFound, in the words apparmor_parser 3.0 says it with', async () => {
    const gone = join(dir, 'apparmor_parser_gone');
    // What apparmor_parser 3.0.8 prints for --remove of a name the kernel has not loaded (ENOENT).
    writeFileSync(gone, '#!/bin/sh\ncat >/dev/null\necho "apparmor_parser: Unable to remove \\"spoke-fake\\".  Profile doesn\'t exist" >&2\nexit 254\n', { mode: 0o755 });
    const securityfs = join(dir, 'securityfs');
    mkdirSync(securityfs, { recursive: true });
    await rejectsWith(unloadProfile('spoke-fake', { parser: gone, securityfs }), { code: 'NotFound', reason: 'NOT_FOUND' });
  });

  it("an unload that fails for another reason is APPARMOR_FAILED, whatever a warning beside it says (a parser.conf that is missing is 'not found')", async () => {
    const securityfs = join(dir, 'securityfs');
    mkdirSync(securityfs, { recursive: true });
    // What apparmor_parser 3.0.8 prints with no /etc/apparmor/parser.conf (an image shipping the
    // binary alone), then for a removal the kernel refuses; and a failure naming a missing file.
    for (const [what, said] of [
      ['denied', `Warning from stdin (line 1): config file '/etc/apparmor/parser.conf' not found\napparmor_parser: Unable to remove "spoke-fake".  Permission denied; attempted to load a profile while confined?`],
      ['no-interface', `Could not open '/sys/kernel/security/apparmor/.remove': No such file or directory`],
    ]) {
      const failed = join(dir, `apparmor_parser_unload_${what}`);
      writeFileSync(failed, `#!/bin/sh\ncat >/dev/null\nprintf '%s\\n' "${said.replace(/"/g, '\\"')}" >&2\nexit 1\n`, { mode: 0o755 });
      await rejectsWith(unloadProfile('spoke-fake', { parser: failed, securityfs }), { code: 'Internal', reason: 'APPARMOR_FAILED' });
    }
  });

  it('no kernel AppArmor (securityfs missing): load and unload refuse with APPARMOR_UNAVAILABLE', async () => {
    const securityfs = join(dir, 'no-securityfs');
    await rejectsWith(loadProfile(text, { parser: failing, securityfs }), { code: 'FailedPrecondition', reason: 'APPARMOR_UNAVAILABLE' });
    await rejectsWith(unloadProfile('spoke-fake', { parser: failing, securityfs }), { code: 'FailedPrecondition', reason: 'APPARMOR_UNAVAILABLE' });
  });
});

// The CLI commands, as users run them.
function runCommand(command: 'profile' | 'merge', args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return spoke([command, ...args]);
}

describe('spoke profile / spoke merge (AppArmor)', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'spoke-aa-'));
  const artifact = join(dir, 'artifact.json');
  writeFileSync(artifact, JSON.stringify(sample));
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, JSON.stringify({ filesystem: { readOnlyPaths: ['/ok', '/x",\n  capability sys_admin,'] } }));

  it('profile validate: ok, and the JSON path on failure', async () => {
    const ok = await runCommand('profile', ['validate', artifact]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /valid apparmor profile \(artifact rules\), sha256:[0-9a-f]{64}/);
    const no = await runCommand('profile', ['validate', bad, '--kind', 'apparmor', '--json']);
    assert.equal(no.code, 1);
    const out = JSON.parse(no.stdout) as { valid: boolean; error: { path: string } };
    assert.equal(out.valid, false);
    assert.equal(out.error.path, 'filesystem.readOnlyPaths[1]');
    assert.match(no.stderr, /^SecurityProfileInvalid: /);
  });

  it('profile render --check: the merged text, accepted by apparmor_parser', async () => {
    const r = await runCommand('profile', ['render', '--kind', 'apparmor', artifact, '--check']);
    assert.equal(r.code, 0, r.stderr);
    const expected = intersectAppArmor(baseline(), sample);
    assert.equal(r.stdout, renderAppArmor(expected.profile, await shimName(expected.bytes)), "under the shim's name, for this machine's parser");
    const named = await runCommand('profile', ['render', '--kind', 'apparmor', artifact, '--name', 'my-profile', '--raw']);
    assert.match(named.stdout, /^profile my-profile flags=/m);
    assert.ok(named.stdout.includes('capability sys_admin,'), '--raw renders the artifact unmerged');
  });

  it('merge --explain --json: effective profile, constraints on stderr', async () => {
    const r = await runCommand('merge', [artifact, '--explain', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { effective: unknown; constrained: { message: string }[]; kind: string };
    const expected = intersectAppArmor(baseline(), sample);
    assert.deepEqual(out.effective, expected.profile);
    assert.equal(out.kind, 'apparmor');
    assert.ok(!('profileName' in out), "no name: a node's covers its parser (profile render --json says it)");
    assert.ok(out.constrained.some((c) => c.message === 'capability SYS_ADMIN: dropped (by the node baseline)'));
    assert.match(r.stderr, /constrained: capability SYS_ADMIN: dropped \(by the node baseline\)/);
    assert.match(r.stderr, /constrained: allowedExecutables \/tmp\/dropper: artifact x, effective none/);
    assert.match(r.stderr, /^merge: \d+ constraint\(s\)/m);
    const plain = await runCommand('merge', [artifact, '--baseline', BASELINE_FILE]);
    assert.equal(plain.stdout, expected.bytes.toString() + '\n');
  });

  it('merge refuses --base for AppArmor and a bad artifact', async () => {
    const r = await runCommand('merge', [artifact, '--base', artifact]);
    assert.equal(r.code, 2);
    const b = await runCommand('merge', [bad, '--kind', 'apparmor']);
    assert.equal(b.code, 1);
    assert.match(b.stderr, /^SecurityProfileInvalid: artifact .*filesystem\.readOnlyPaths\[1\]/);
  });
});

/** The apparmor_parser processes running now, with their parents (from /proc). */
function parserProcesses(): { pid: number; ppid: number }[] {
  const out: { pid: number; ppid: number }[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (!readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0')[0]?.endsWith('apparmor_parser')) continue;
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      out.push({ pid: Number(name), ppid: Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}
