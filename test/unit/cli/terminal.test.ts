// Human output carries text a registry chose (media types, digests of a manifest that is not a
// profile, error messages): it reaches the terminal without control sequences.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { emit } from '../../../src/cli/args.js';
import { reportError } from '../../../src/cli/errors.js';
import { SpokeError } from '../../../src/core/errors.js';
import { terminalSafe } from '../../../src/core/text.js';

function captured(write: () => void, stream: NodeJS.WriteStream = process.stdout): string {
  const original = stream.write.bind(stream);
  let out = '';
  stream.write = ((chunk: string | Uint8Array) => {
    out += chunk.toString();
    return true;
  }) as typeof stream.write;
  try {
    write();
  } finally {
    stream.write = original;
  }
  return out;
}

describe('terminal-safe human output', () => {
  it('escapes control characters, DEL, C1 controls and bidi overrides; keeps newlines, tabs and other text', () => {
    assert.equal(terminalSafe('a\x1b]0;TITLE\x07\x1b[2K\rb'), 'a\\x1b]0;TITLE\\x07\\x1b[2K\\x0db');
    assert.equal(terminalSafe('x\x7f\x9by\u202ez\u2066'), 'x\\x7f\\x9by\\u202ez\\u2066');
    assert.equal(terminalSafe('line 1\n\tline 2 — ü sha256:ab'), 'line 1\n\tline 2 — ü sha256:ab');
  });

  it('property: the result never holds a control character other than newline and tab', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (s) => !/[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/.test(terminalSafe(s))));
  });

  it('emit writes human text through it, and --json as JSON that escapes C1 controls and bidi characters too', () => {
    assert.equal(captured(() => emit(false, {}, () => 'mediaType: x\x1b[1A\x1b[2Kforged')), 'mediaType: x\\x1b[1A\\x1b[2Kforged\n');
    assert.equal(captured(() => emit(true, { m: 'x\x1b' }, () => '')), '{\n  "m": "x\\u001b"\n}\n');
    const json = captured(() => emit(true, { m: 'a\u202eb\u009bc\u2028d\u200fe' }, () => ''));
    assert.equal(json, '{\n  "m": "a\\u202eb\\u009bc\\u2028d\\u200fe"\n}\n');
    assert.deepEqual(JSON.parse(json), { m: 'a\u202eb\u009bc\u2028d\u200fe' });
  });

  it('bidi marks and line separators are escaped too', () => {
    assert.equal(terminalSafe('a\u200eb\u200fc\u061cd\u2028e\u2029f'), 'a\\u200eb\\u200fc\\u061cd\\u2028e\\u2029f');
  });

  it('errors on stderr go through it too', () => {
    const err = new SpokeError('NotFound', 'manifest answered 404 (\x1b]0;owned\x07)', {}, { reason: 'NOT_FOUND' });
    assert.equal(captured(() => reportError(err), process.stderr), 'NotFound: manifest answered 404 (\\x1b]0;owned\\x07) (reason NOT_FOUND)\n');
  });
});
