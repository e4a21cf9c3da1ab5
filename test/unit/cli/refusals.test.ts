// The reasons CLI inputs are refused with (src/core/errors.ts), from real files: scripts and the
// controller branch on them, never on message text.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { loadBindings } from '../../../src/cli/commands/binding.js';
import { signingKeyLoader, signingKeyWarnings } from '../../../src/cli/recording-controller.js';
import { rejectsWith } from '../../helpers/assert.js';

const dir = mkdtempSync(join(tmpdir(), 'spoke-cli-refusals-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string | Buffer): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

describe('binding files', () => {
  it('YAML that does not parse, another kind, bad Namespace labels: InvalidArgument, OBJECT_INVALID', async () => {
    const expected = { code: 'InvalidArgument', reason: 'OBJECT_INVALID' } as const;
    await rejectsWith(loadBindings([file('syntax.yaml', 'kind: [unclosed\n')], 'default'), expected);
    await rejectsWith(loadBindings([file('kind.yaml', 'apiVersion: v1\nkind: ConfigMap\nmetadata: { name: x }\n')], 'default'), expected);
    await rejectsWith(loadBindings([file('labels.yaml', 'apiVersion: v1\nkind: Namespace\nmetadata: { name: team, labels: [a] }\n')], 'default'), expected);
  });
});

describe('the recording controller signing keys', () => {
  const load = signingKeyLoader(dir);

  it('a name that is not a Secret key, or names a scope file: OBJECT_INVALID; a missing key: FILE_UNREADABLE; an oversized one: KEY_INVALID', async () => {
    await rejectsWith(load('../etc', 'team'), { code: 'InvalidArgument', reason: 'OBJECT_INVALID' });
    await rejectsWith(load('release.namespaces', 'team'), { code: 'InvalidArgument', reason: 'OBJECT_INVALID' });
    file('absent.namespaces', 'team\n');
    await rejectsWith(load('absent', 'team'), { code: 'NotFound', reason: 'FILE_UNREADABLE' });
    file('huge', Buffer.alloc(64 * 1024 + 1, 'a'));
    file('huge.namespaces', '*\n');
    await rejectsWith(load('huge', 'team'), { code: 'InvalidArgument', reason: 'KEY_INVALID' });
  });

  it('a key signs only for the namespaces of its scope file, read on every use; without one, for none', async () => {
    file('release', 'PEM of release');
    await rejectsWith(load('release', 'team'), { code: 'PermissionDenied', reason: 'KEY_NOT_ALLOWED' });
    file('release.namespaces', '# who may sign\nteam\n');
    assert.equal(await load('release', 'team'), 'PEM of release');
    const refused = await rejectsWith(load('release', 'other'), { code: 'PermissionDenied', reason: 'KEY_NOT_ALLOWED' });
    assert.equal(refused.context.namespace, 'other');
    file('release.namespaces', '*\n');
    assert.equal(await load('release', 'other'), 'PEM of release');
  });

  it('at start, names each key that signs for no namespace or whose scope file does not parse', () => {
    const keys = mkdtempSync(join(tmpdir(), 'spoke-keys-'));
    try {
      for (const [name, text] of [['open', 'PEM'], ['open.namespaces', '*\n'], ['team', 'PEM'], ['team.namespaces', 'team\n'], ['bare', 'PEM'], ['typo', 'PEM'], ['typo.namespaces', 'Team\n']]) writeFileSync(join(keys, name!), text!);
      mkdirSync(join(keys, '..2026_12_06')); // a mounted Secret's own entries
      const warnings = signingKeyWarnings(keys);
      assert.equal(warnings.length, 2, warnings.join('\n'));
      assert.match(warnings[0]!, /^signing key bare has no bare\.namespaces/);
      assert.match(warnings[1]!, /^signing key typo: .*typo\.namespaces:1/);
      assert.deepEqual(signingKeyWarnings(join(keys, 'absent')), []);
    } finally {
      rmSync(keys, { recursive: true, force: true });
    }
  });

  it('a malformed or oversized scope file: OPTION_INVALID, with its line; the key is not read', async () => {
    file('typo', 'PEM of typo');
    file('typo.namespaces', 'team\nTeam B\n');
    const bad = await rejectsWith(load('typo', 'team'), { code: 'InvalidArgument', reason: 'OPTION_INVALID' });
    assert.deepEqual([bad.context.file, bad.context.line], [join(dir, 'typo.namespaces'), 2]);
    file('typo.namespaces', `${'team\n'.repeat(16 * 1024 + 1)}`);
    await rejectsWith(load('typo', 'team'), { code: 'InvalidArgument', reason: 'OPTION_INVALID' });
  });
});
