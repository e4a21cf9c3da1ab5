// The reasons CLI inputs are refused with (src/core/errors.ts), from real files: scripts and the
// controller branch on them, never on message text.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { loadBindings } from '../../../src/cli/commands/binding.js';
import { signingKeyLoader } from '../../../src/cli/recording-controller.js';
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

  it('a name that is not a Secret key: OBJECT_INVALID; a missing key: FILE_UNREADABLE; an oversized one: KEY_INVALID', async () => {
    await rejectsWith(load('../etc'), { code: 'InvalidArgument', reason: 'OBJECT_INVALID' });
    await rejectsWith(load('absent'), { code: 'NotFound', reason: 'FILE_UNREADABLE' });
    file('huge', Buffer.alloc(64 * 1024 + 1, 'a'));
    await rejectsWith(load('huge'), { code: 'InvalidArgument', reason: 'KEY_INVALID' });
  });
});
