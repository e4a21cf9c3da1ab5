// Strict decode and the artifact rules: every refusal is SecurityProfileInvalid naming the JSON path.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ErrorReason } from '../../../src/core/errors.js';
import {
  decodeAppArmor,
  MAX_ARTIFACT_PATHS,
  MAX_TOTAL_PATH_BYTES,
  validateAppArmorArtifact,
  validateAppArmorArtifactBytes,
  type AppArmorProfile,
} from '../../../src/profiles/apparmor/index.js';
import { assertSpokeError } from '../../helpers/assert.js';

const bytes = (s: string | object) => Buffer.from(typeof s === 'string' ? s : JSON.stringify(s));

function refused(fn: () => unknown, path: string | undefined, reason: ErrorReason = 'PROFILE_INVALID'): void {
  assert.equal(assertSpokeError(catching(fn), { code: 'SecurityProfileInvalid', reason }).context.path, path);
}

function catching(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return assert.fail('expected a refusal');
}

const full = {
  executable: { allowedExecutables: ['/usr/bin/app'], allowedLibraries: ['/lib/**'] },
  filesystem: { readOnlyPaths: ['/etc/**'], writeOnlyPaths: ['/var/log/app.log'], readWritePaths: ['/tmp/**'] },
  network: { allowRaw: false, allowedProtocols: { allowTcp: true, allowUdp: false } },
  capability: { allowedCapabilities: ['chown', 'NET_BIND_SERVICE'] },
};

describe('decodeAppArmor', () => {
  it('decodes the KEP format exactly', () => {
    assert.deepEqual(validateAppArmorArtifactBytes(bytes(full)), full);
  });

  it('null members read as absent; absent members stay absent', () => {
    assert.deepEqual(decodeAppArmor(bytes('{"network":null,"capability":{"allowedCapabilities":null}}')), { capability: {} });
    assert.deepEqual(decodeAppArmor(bytes('{}')), {});
  });

  const cases: [string, string | Buffer, string | undefined, ErrorReason?][] = [
    ['unknown top-level member', '{"file":{}}', 'file'],
    ['unknown nested member', '{"filesystem":{"readOnly":[]}}', 'filesystem.readOnly'],
    ['member in the wrong case (Go would accept it)', '{"Filesystem":{}}', 'Filesystem'],
    ['member in the wrong case, nested', '{"network":{"allowedProtocols":{"allowTCP":true}}}', 'network.allowedProtocols.allowTCP'],
    ['duplicate member', '{"network":{"allowRaw":true,"allowRaw":false}}', 'network.allowRaw', 'JSON_INVALID'],
    ['trailing data', '{} {}', undefined, 'JSON_INVALID'],
    ['not an object', '[]', '(document)'],
    ['string where a list is expected', '{"filesystem":{"readOnlyPaths":"/etc"}}', 'filesystem.readOnlyPaths'],
    ['number in a list', '{"filesystem":{"readOnlyPaths":["/a",3]}}', 'filesystem.readOnlyPaths[1]'],
    ['string for a boolean', '{"network":{"allowRaw":"true"}}', 'network.allowRaw'],
    ['object where a section is expected', '{"capability":[]}', 'capability'],
  ];
  for (const [name, input, path, reason] of cases) {
    it(`refuses ${name}`, () => refused(() => decodeAppArmor(typeof input === 'string' ? bytes(input) : input), path, reason));
  }

  it('refuses bad UTF-8', () => refused(() => decodeAppArmor(Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d])), undefined, 'JSON_INVALID'));
});

describe('validateAppArmorArtifact', () => {
  const withPath = (list: 'readOnlyPaths' | 'writeOnlyPaths' | 'readWritePaths', paths: string[]): AppArmorProfile => ({ filesystem: { [list]: paths } });

  it('accepts the shipped shapes', () => {
    validateAppArmorArtifact(full);
    validateAppArmorArtifact({});
    validateAppArmorArtifact(withPath('readOnlyPaths', ['/', '/dir/', '/a b/c', '/é/ü', '/x/{a,b,}z/[^.]*', '/proc/[0-9]*/status', '/a$b^c~d=e+f%g(h)i']));
  });

  const bad: [string, string][] = [
    ['relative', 'etc/passwd'],
    ['empty', ''],
    ['variable', '/home/@{USER}/x'],
    ['newline', '/a\n/b'],
    ['carriage return', '/a\r'],
    ['tab', '/a\tb'],
    ['NUL', '/a\u0000'],
    ['line separator', '/a\u2028b'],
    ['bidi override', '/a\u202eb'],
    ['no-break space', '/a\u00a0b'],
    ['quote', '/a" rw,\n  /b'],
    ['backslash', '/a\\,b'],
    ['comment', '/a#b'],
    ['bang', '/[!a]'],
    ['comma at the end', '/etc/passwd,'],
    ['comma outside an alternation', '/a,b'],
    ['unbalanced brace', '/a/{b,c'],
    ['closing brace alone', '/a/b}'],
    ['alternation without comma', '/a/{b}'],
    ['unbalanced bracket', '/a/[bc'],
    ['closing bracket alone', '/a/b]'],
    ['empty class', '/a/[]'],
    ['star in class', '/a/[*]'],
    ['slash in class', '/a/[/]'],
    ['reversed range', '/a/[z-a]'],
    ['three stars', '/a/***'],
    ['empty component', '/a//b'],
    ['dot component', '/a/./b'],
    ['dotdot component', '/etc/../root'],
    ['too many alternatives', `/a/{${Array.from({ length: 101 }, (_, i) => `x${i}`).join(',')}}`],
    ['nested too deep', `/${'{a,'.repeat(50)}b${'}'.repeat(50)}`],
    ['too long', '/' + 'a'.repeat(4096)],
  ];
  for (const [name, path] of bad) {
    it(`refuses a path with ${name}`, () => refused(() => validateAppArmorArtifact(withPath('readWritePaths', ['/ok', path])), 'filesystem.readWritePaths[1]'));
  }

  it('counts bytes, not characters, against the 4096 limit', () => {
    validateAppArmorArtifact(withPath('readOnlyPaths', ['/' + 'a'.repeat(4095)]));
    refused(() => validateAppArmorArtifact(withPath('readOnlyPaths', ['/' + 'é'.repeat(2048)])), 'filesystem.readOnlyPaths[0]');
  });

  it(`limits paths to ${MAX_ARTIFACT_PATHS} across all lists`, () => {
    const paths = (n: number, p: string) => Array.from({ length: n }, (_, i) => `/${p}${i}`);
    validateAppArmorArtifact({ filesystem: { readOnlyPaths: paths(500, 'r') }, executable: { allowedExecutables: paths(524, 'x') } });
    refused(
      () => validateAppArmorArtifact({ filesystem: { readOnlyPaths: paths(500, 'r'), readWritePaths: paths(300, 'w') }, executable: { allowedExecutables: paths(200, 'x'), allowedLibraries: paths(25, 'l') } }),
      '(document)',
      'LIMIT_EXCEEDED',
    );
  });

  it(`limits the paths' total to ${MAX_TOTAL_PATH_BYTES} bytes before any pattern is compiled (compiling 1 MiB of patterns took ~0.5 s)`, () => {
    const long = Array.from({ length: 70 }, (_, i) => `/${String(i).padStart(3, '0')}${'a'.repeat(3900)}`);
    // The last one is malformed: it is never compiled, the total refuses the document first.
    refused(() => validateAppArmorArtifact(withPath('readOnlyPaths', [...long, '/lib/{a'])), '(document)', 'SIZE_LIMIT');
  });

  it('refuses duplicates within a list and a path in two filesystem lists', () => {
    refused(() => validateAppArmorArtifact(withPath('readOnlyPaths', ['/a', '/b', '/a'])), 'filesystem.readOnlyPaths[2]');
    refused(() => validateAppArmorArtifact({ filesystem: { readOnlyPaths: ['/a'], readWritePaths: ['/a'] } }), 'filesystem.readWritePaths[0]');
    validateAppArmorArtifact({ filesystem: { readOnlyPaths: ['/a'] }, executable: { allowedExecutables: ['/a'] } });
  });

  it('refuses an empty, "." or ".." component however it is spelled, but not what a star or class may match', () => {
    for (const p of ['/tmp/{..,x}/etc/shadow', '/tmp/{,/}x', '/tmp/{,/x}', '/tmp/x/{.,y}', '/tmp/[.][.]/x', '/tmp/{[.],y}{[.],}/x', '/tmp/x/{a,.}']) {
      refused(() => validateAppArmorArtifact(withPath('readWritePaths', [p])), 'filesystem.readWritePaths[0]');
    }
    for (const p of ['/home/*/.config/**', '/a{..,b}', '/etc/{,app/}config', '/x/...', '/x/.{a,b}', '/x/[^a]y', '/x/**/y', '/x/{a,b}/', '/home/*/.*', '/etc/.*', '/x/.**', '/x/.*/y', '/x/..*', '/x/{,*/}y', '/x/{,**/}y', '/x/*{,/}y', '/x/{*,a}/']) {
      validateAppArmorArtifact(withPath('readWritePaths', [p]));
    }
  });

  it('executables and libraries follow the same path rules', () => {
    refused(() => validateAppArmorArtifact({ executable: { allowedExecutables: ['bin/sh'] } }), 'executable.allowedExecutables[0]');
    refused(() => validateAppArmorArtifact({ executable: { allowedLibraries: ['/lib/{a'] } }), 'executable.allowedLibraries[0]');
  });

  const badCaps: [string, string][] = [
    ['unknown', 'sys_everything'],
    ['prefixed', 'CAP_CHOWN'],
    ['rule injection', 'chown,\n  capability sys_admin'],
    ['space', 'sys admin'],
    ['non-ASCII look-alike', 'ſys_admin'],
    ['empty', ''],
  ];
  for (const [name, cap] of badCaps) {
    it(`refuses a capability: ${name}`, () => refused(() => validateAppArmorArtifact({ capability: { allowedCapabilities: ['kill', cap] } }), 'capability.allowedCapabilities[1]'));
  }

  it('refuses a capability listed twice in two spellings', () => {
    refused(() => validateAppArmorArtifact({ capability: { allowedCapabilities: ['chown', 'CHOWN'] } }), 'capability.allowedCapabilities[1]');
  });

  it('validateAppArmorArtifactBytes reports decode and rule errors alike', () => {
    refused(() => validateAppArmorArtifactBytes(bytes({ filesystem: { readOnlyPaths: ['/ok', 'nope'] } })), 'filesystem.readOnlyPaths[1]');
    refused(() => validateAppArmorArtifactBytes(bytes('{"x":1}')), 'x');
  });
});
