import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { decide, lintPolicy } from '../../../src/policy/index.js';
import { D1, HEADER, memFs, pem, policyText, ref, trustedRootJson } from './fixtures.js';

const fs = memFs({ '/k.pub': pem('p256') });
const signers = { k: { publicKey: '/k.pub' } };

function warnings(rules: object[], extra: Record<string, unknown> = { signers }) {
  const r = lintPolicy(policyText(rules, extra), 'p.yaml', fs.readFile);
  assert.ok(r.ok, r.errors[0]?.message);
  return r.warnings;
}

describe('lintPolicy', () => {
  it('reports a load error as one error with its line and field', () => {
    const r = lintPolicy(`${HEADER}rules:\n  - scope: r.io/\n    action: deny\n`, 'p.yaml', fs.readFile);
    assert.equal(r.ok, false);
    assert.equal(r.policy, undefined);
    assert.deepEqual({ ...r.errors[0], message: undefined }, { severity: 'error', file: 'p.yaml', line: 4, path: 'rules[0].scope', message: undefined });
  });

  it('a clean policy has no warnings', () => {
    assert.deepEqual(warnings([{ scope: 'r.io/team/profiles', kinds: ['seccomp'], signedBy: ['k'] }]), []);
  });

  it('warns about an allow rule covered by a deny at the same scope', () => {
    const w = warnings([
      { scope: 'r.io/x', kinds: ['seccomp'], signedBy: ['k'] },
      { scope: 'r.io/x', action: 'deny' },
    ]);
    assert.equal(w.length, 1);
    assert.equal(w[0]!.path, 'rules[0]');
    assert.equal(w[0]!.line, 5);
    assert.match(w[0]!.message, /^p\.yaml:5: rules\[0\]: never allows anything/);
  });

  it('warns about a partly shadowed allow rule, and about duplicates', () => {
    const partly = warnings([
      { scope: 'r.io/x', kinds: ['seccomp', 'apparmor'], signedBy: ['k'] },
      { scope: 'r.io/x', action: 'deny', kinds: ['apparmor'] },
    ]);
    assert.match(partly[0]!.message, /never allows apparmor/);
    const dup = warnings([
      { scope: 'r.io/x/y', kinds: ['seccomp'], signedBy: ['k'] },
      { scope: 'R.io/x/y', kinds: ['seccomp'], signedBy: ['k'] },
    ]);
    assert.equal(dup.length, 1);
    assert.match(dup[0]!.message, /rules\[1\]: duplicate of rules\[0\]/);
    // Rules that differ only in mode are no duplicates: deleting the enforcing one would leave
    // the scope in audit (docs/audit-mode.md: one enforcing rule at the scope enforces).
    const modes = warnings([
      { scope: 'r.io/x/y', kinds: ['seccomp'], signedBy: ['k'], mode: 'audit' },
      { scope: 'r.io/x/y', kinds: ['seccomp'], signedBy: ['k'] },
    ]);
    assert.deepEqual(modes.filter((w) => /duplicate/.test(w.message)), []);
  });

  it('warns about an unsigned allow on a broad scope', () => {
    const w = warnings([{ scope: 'r.io', kinds: ['seccomp'], unsigned: true }], {});
    assert.match(w[0]!.message, /allows unsigned artifacts from a broad scope \(r\.io\)/);
    assert.deepEqual(warnings([{ scope: 'r.io/team/dev', kinds: ['seccomp'], unsigned: true }], {}), []);
    assert.deepEqual(warnings([{ scope: 'r.io', kinds: ['seccomp'], unsigned: true, digests: [D1] }], {}), []);
  });

  it('warns that same-scope allow rules with different signing are ORed', () => {
    const w = warnings([
      { scope: 'r.io/x/y', kinds: ['seccomp'], signedBy: ['k'] },
      { scope: 'r.io/x/y', kinds: ['seccomp'], unsigned: true },
    ]);
    assert.ok(w.some((x) => /rules\[1\]: shares scope r\.io\/x\/y with rules\[0\].*ORed/.test(x.message)));
  });

  it('warns that a restricted rule does not fall back to a broader one', () => {
    const w = warnings([
      { scope: 'r.io/x', kinds: ['seccomp'], signedBy: ['k'] },
      { scope: 'r.io/x/y', kinds: ['seccomp'], signedBy: ['k'], namespaces: ['a'] },
    ]);
    assert.match(w[0]!.message, /seccomp pulls under r\.io\/x\/y outside its namespaces are denied; they do not fall back to rules\[0\]/);
  });

  it('warns about unused signers, non-loopback insecure hosts and unused mirrors', () => {
    const text = `${HEADER}signers:\n  k: { publicKey: /k.pub }\nrules:\n  - { scope: r.io/x/y, kinds: [seccomp], unsigned: true }\ninsecure: [127.0.0.1:5000, '[::1]:5000', localhost:80, r.io]\nmirrors:\n  q.io: [m.io]\n`;
    const r = lintPolicy(text, 'p.yaml', fs.readFile);
    const msgs = r.warnings.map((w) => `${w.line} ${w.path}`);
    assert.deepEqual(msgs, ['4 signers.k', '7 insecure[3]', '9 mirrors.q.io']);
  });

  it('warns about an unescaped dot in a subjectRegExp', async () => {
    const rootFs = memFs({ '/root.json': JSON.stringify(await trustedRootJson()) });
    const text = `${HEADER}signers:\n  ci:\n    keyless:\n      trustedRoot: /root.json\n      issuer: https://i.example\n      subjectRegExp: '^https://github.com/acme/.*$'\nrules:\n  - { scope: r.io/x/y, kinds: [seccomp], signedBy: [ci] }\n`;
    const w = lintPolicy(text, 'p.yaml', rootFs.readFile).warnings;
    assert.equal(w.length, 1);
    assert.match(w[0]!.message, /unescaped "\." matches any character/);
  });
});

describe('shipped files', () => {
  const root = fileURLToPath(new URL('../../../../', import.meta.url));
  const read = (p: string) => readFileSync(`${root}${p}`, 'utf8');
  let files: ReturnType<typeof memFs>;
  before(async () => {
    files = memFs({
      '/etc/spoke/keys/platform.pub': pem('p256'),
      '/etc/spoke/trusted_root.json': JSON.stringify(await trustedRootJson()),
    });
  });

  it('policy/example-policy.yaml loads, lints with only the warning it illustrates, and decides as its comments say', () => {
    const r = lintPolicy(read('policy/example-policy.yaml'), '/etc/spoke/policy.yaml', files.readFile);
    assert.ok(r.ok, r.errors[0]?.message);
    assert.deepEqual(
      r.warnings.map((w) => w.message.replace(/^.*?: rules/, 'rules')),
      ['rules[2]: seccomp pulls under registry.example.com/security/profiles/sandbox outside its digests and namespaces are denied; they do not fall back to rules[0] (registry.example.com/security/profiles)'],
    );
    const p = r.policy!;
    assert.ok(decide(p, ref('registry.example.com/security/profiles/base'), 'seccomp').allowed);
    assert.equal(decide(p, ref('registry.example.com/security/profiles/experimental/x'), 'seccomp').allowed, false);
    const sandbox = decide(p, ref('registry.example.com/security/profiles/sandbox', 'sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b'), 'seccomp', 'dev');
    assert.ok(sandbox.allowed && sandbox.unsigned);
    assert.equal(decide(p, ref('registry.example.com/security/profiles/sandbox'), 'seccomp', 'dev').allowed, false);
    assert.equal(decide(p, ref('registry.example.com/other'), 'seccomp').allowed, false);
  });
});
