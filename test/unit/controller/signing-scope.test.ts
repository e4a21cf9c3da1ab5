// Which namespaces may sign with a controller key (src/controller/signing-scope.ts): exactly
// those its scope file lists, every one for `*`, none without a scope file.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { isSpokeError } from '../../../src/core/errors.js';
import { parseKeyScope, scopeAllows } from '../../../src/controller/signing-scope.js';

const namespaceArb = fc.stringMatching(/^[a-z0-9](?:[-a-z0-9]{0,20}[a-z0-9])?$/);

function refusal(text: string): { reason: string; line: unknown } {
  try {
    parseKeyScope(text, 'keys/release.namespaces');
  } catch (e) {
    assert.ok(isSpokeError(e));
    return { reason: e.reason, line: e.context.line };
  }
  assert.fail(`accepted ${JSON.stringify(text)}`);
}

describe('signing key scopes', () => {
  it('a key signs for exactly the namespaces listed, whatever the comments, blanks and spaces around them', () => {
    fc.assert(
      fc.property(fc.uniqueArray(namespaceArb, { maxLength: 12 }), namespaceArb, (listed, probe) => {
        const text = ['# who may sign with release', '', ...listed.map((ns, i) => (i % 2 ? `  ${ns}\t` : ns)), ''].join('\n');
        const scope = parseKeyScope(text, 'release.namespaces');
        for (const ns of listed) assert.ok(scopeAllows(scope, ns), ns);
        assert.equal(scopeAllows(scope, probe), listed.includes(probe));
      }),
    );
  });

  it('* signs for every namespace; no scope file, or an empty one, for none', () => {
    fc.assert(
      fc.property(namespaceArb, (ns) => {
        assert.equal(scopeAllows(parseKeyScope('*\n', 'f'), ns), true);
        assert.equal(scopeAllows(undefined, ns), false);
        assert.equal(scopeAllows(parseKeyScope('# nobody yet\n\n', 'f'), ns), false);
      }),
    );
  });

  it('refuses what is not a namespace name, naming the line; * beside names is refused too', () => {
    assert.deepEqual(refusal('team\nTeam-B\n'), { reason: 'OPTION_INVALID', line: 2 });
    assert.deepEqual(refusal('team\n\n# ok\nteam,b\n'), { reason: 'OPTION_INVALID', line: 4 });
    assert.deepEqual(refusal('team*\n'), { reason: 'OPTION_INVALID', line: 1 });
    assert.deepEqual(refusal(`${'a'.repeat(64)}\n`), { reason: 'OPTION_INVALID', line: 1 });
    assert.deepEqual(refusal('-team\n'), { reason: 'OPTION_INVALID', line: 1 });
    assert.equal(refusal('*\nteam\n').reason, 'OPTION_INVALID');
  });
});
