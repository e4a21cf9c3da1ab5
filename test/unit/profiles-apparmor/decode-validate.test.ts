// Strict decode and the artifact rules: every refusal is SecurityProfileInvalid naming the JSON path.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SpokeError } from '../../../src/core/errors.js';
import {
  decodeAppArmor,
  MAX_ARTIFACT_PATHS,
  validateAppArmorArtifact,
  validateAppArmorArtifactBytes,
  type AppArmorProfile,
} from '../../../src/profiles/apparmor/index.js';

const bytes = (s: string | object) => Buffer.from(typeof s === 'string' ? s : JSON.stringify(s));

function refused(fn: () => unknown, path: string | undefined, message?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof SpokeError, `not a SpokeError: ${String(e)}`);
    assert.equal(e.code, 'SecurityProfileInvalid');
    if (path !== undefined) assert.equal(e.context.path, path, e.message);
    if (message) assert.match(e.message, message);
    return true;
  });
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

  const cases: [string, string | Buffer, string | undefined, RegExp?][] = [
    ['unknown top-level member', '{"file":{}}', 'file', /unknown member/],
    ['unknown nested member', '{"filesystem":{"readOnly":[]}}', 'filesystem.readOnly'],
    ['member in the wrong case (Go would accept it)', '{"Filesystem":{}}', 'Filesystem', /spelled "filesystem"/],
    ['member in the wrong case, nested', '{"network":{"allowedProtocols":{"allowTCP":true}}}', 'network.allowedProtocols.allowTCP'],
    ['duplicate member', '{"network":{"allowRaw":true,"allowRaw":false}}', 'network.allowRaw', /duplicate/],
    ['trailing data', '{} {}', undefined, /not valid JSON/],
    ['not an object', '[]', '(document)'],
    ['string where a list is expected', '{"filesystem":{"readOnlyPaths":"/etc"}}', 'filesystem.readOnlyPaths', /array/],
    ['number in a list', '{"filesystem":{"readOnlyPaths":["/a",3]}}', 'filesystem.readOnlyPaths[1]', /string/],
    ['string for a boolean', '{"network":{"allowRaw":"true"}}', 'network.allowRaw', /true or false/],
    ['object where a section is expected', '{"capability":[]}', 'capability', /object/],
  ];
  for (const [name, input, path, message] of cases) {
    it(`refuses ${name}`, () => refused(() => decodeAppArmor(typeof input === 'string' ? bytes(input) : input), path, message));
  }

  it('refuses bad UTF-8', () => refused(() => decodeAppArmor(Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d])), undefined, /UTF-8/));
});

describe('validateAppArmorArtifact', () => {
  const withPath = (list: 'readOnlyPaths' | 'writeOnlyPaths' | 'readWritePaths', paths: string[]): AppArmorProfile => ({ filesystem: { [list]: paths } });

  it('accepts the shipped shapes', () => {
    validateAppArmorArtifact(full);
    validateAppArmorArtifact({});
    validateAppArmorArtifact(withPath('readOnlyPaths', ['/', '/dir/', '/a b/c', '/é/ü', '/x/{a,b,}/[^.]*', '/proc/[0-9]*/status', '/a$b^c~d=e+f%g(h)i']));
  });

  const bad: [string, string, RegExp][] = [
    ['relative', 'etc/passwd', /absolute/],
    ['empty', '', /empty/],
    ['variable', '/home/@{USER}/x', /variables/],
    ['newline', '/a\n/b', /U\+000A/],
    ['carriage return', '/a\r', /U\+000D/],
    ['tab', '/a\tb', /U\+0009/],
    ['NUL', '/a\u0000', /U\+0000/],
    ['line separator', '/a\u2028b', /U\+2028/],
    ['bidi override', '/a\u202eb', /U\+202E/],
    ['no-break space', '/a\u00a0b', /U\+00A0/],
    ['quote', '/a" rw,\n  /b', /quote|U\+000A/],
    ['backslash', '/a\\,b', /backslash/],
    ['comment', '/a#b', /"#"/],
    ['bang', '/[!a]', /"!"/],
    ['comma at the end', '/etc/passwd,', /","/],
    ['comma outside an alternation', '/a,b', /","/],
    ['unbalanced brace', '/a/{b,c', /without "}"/],
    ['closing brace alone', '/a/b}', /without "{"/],
    ['alternation without comma', '/a/{b}', /","/],
    ['unbalanced bracket', '/a/[bc', /without "]"/],
    ['closing bracket alone', '/a/b]', /without "\["/],
    ['empty class', '/a/[]', /empty class|"]"/],
    ['star in class', '/a/[*]', /inside a class/],
    ['slash in class', '/a/[/]', /inside a class/],
    ['reversed range', '/a/[z-a]', /reversed/],
    ['three stars', '/a/***', /stars/],
    ['empty component', '/a//b', /"\/\/"/],
    ['dot component', '/a/./b', /"\." or "\.\."/],
    ['dotdot component', '/etc/../root', /"\." or "\.\."/],
    ['too many alternatives', `/a/{${Array.from({ length: 101 }, (_, i) => `x${i}`).join(',')}}`, /alternatives/],
    ['nested too deep', `/${'{a,'.repeat(50)}b${'}'.repeat(50)}`, /nested/],
    ['too long', '/' + 'a'.repeat(4096), /4097 bytes/],
  ];
  for (const [name, path, message] of bad) {
    it(`refuses a path with ${name}`, () => refused(() => validateAppArmorArtifact(withPath('readWritePaths', ['/ok', path])), 'filesystem.readWritePaths[1]', message));
  }

  it('counts bytes, not characters, against the 4096 limit', () => {
    validateAppArmorArtifact(withPath('readOnlyPaths', ['/' + 'a'.repeat(4095)]));
    refused(() => validateAppArmorArtifact(withPath('readOnlyPaths', ['/' + 'é'.repeat(2048)])), 'filesystem.readOnlyPaths[0]', /bytes/);
  });

  it(`limits paths to ${MAX_ARTIFACT_PATHS} across all lists`, () => {
    const paths = (n: number, p: string) => Array.from({ length: n }, (_, i) => `/${p}${i}`);
    validateAppArmorArtifact({ filesystem: { readOnlyPaths: paths(500, 'r') }, executable: { allowedExecutables: paths(524, 'x') } });
    refused(
      () => validateAppArmorArtifact({ filesystem: { readOnlyPaths: paths(500, 'r'), readWritePaths: paths(300, 'w') }, executable: { allowedExecutables: paths(200, 'x'), allowedLibraries: paths(25, 'l') } }),
      '(document)',
      /1025 paths/,
    );
  });

  it('refuses duplicates within a list and a path in two filesystem lists', () => {
    refused(() => validateAppArmorArtifact(withPath('readOnlyPaths', ['/a', '/b', '/a'])), 'filesystem.readOnlyPaths[2]', /twice/);
    refused(() => validateAppArmorArtifact({ filesystem: { readOnlyPaths: ['/a'], readWritePaths: ['/a'] } }), 'filesystem.readWritePaths[0]', /also listed at filesystem.readOnlyPaths\[0\]/);
    validateAppArmorArtifact({ filesystem: { readOnlyPaths: ['/a'] }, executable: { allowedExecutables: ['/a'] } });
  });

  it('executables and libraries follow the same path rules', () => {
    refused(() => validateAppArmorArtifact({ executable: { allowedExecutables: ['bin/sh'] } }), 'executable.allowedExecutables[0]', /absolute/);
    refused(() => validateAppArmorArtifact({ executable: { allowedLibraries: ['/lib/{a'] } }), 'executable.allowedLibraries[0]');
  });

  const badCaps: [string, string, RegExp][] = [
    ['unknown', 'sys_everything', /unknown capability/],
    ['prefixed', 'CAP_CHOWN', /without the CAP_ prefix/],
    ['rule injection', 'chown,\n  capability sys_admin', /not a capability name/],
    ['space', 'sys admin', /not a capability name/],
    ['non-ASCII look-alike', 'ſys_admin', /not a capability name/],
    ['empty', '', /not a capability name/],
  ];
  for (const [name, cap, message] of badCaps) {
    it(`refuses a capability: ${name}`, () => refused(() => validateAppArmorArtifact({ capability: { allowedCapabilities: ['kill', cap] } }), 'capability.allowedCapabilities[1]', message));
  }

  it('refuses a capability listed twice in two spellings', () => {
    refused(() => validateAppArmorArtifact({ capability: { allowedCapabilities: ['chown', 'CHOWN'] } }), 'capability.allowedCapabilities[1]', /twice/);
  });

  it('validateAppArmorArtifactBytes reports decode and rule errors alike', () => {
    refused(() => validateAppArmorArtifactBytes(bytes({ filesystem: { readOnlyPaths: ['/ok', 'nope'] } })), 'filesystem.readOnlyPaths[1]');
    refused(() => validateAppArmorArtifactBytes(bytes('{"x":1}')), 'x');
  });
});
