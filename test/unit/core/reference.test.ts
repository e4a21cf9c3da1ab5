import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { SpokeError, type ErrorReason } from '../../../src/core/errors.js';
import { spokeError } from '../../helpers/assert.js';
import { formatReference, parseReference, parseRepositoryRef } from '../../../src/core/reference.js';

const HEX = 'a'.repeat(64);
const D = `sha256:${HEX}`;

describe('parseReference accepts digest-pinned references with a host', () => {
  const ok: [string, { registry: string; host: string; port?: number; repository: string }][] = [
    [`registry.example.com/security/profiles@${D}`, { registry: 'registry.example.com', host: 'registry.example.com', repository: 'security/profiles' }],
    [`127.0.0.1:5000/p@${D}`, { registry: '127.0.0.1:5000', host: '127.0.0.1', port: 5000, repository: 'p' }],
    [`[::1]:5000/a/b/c@${D}`, { registry: '[::1]:5000', host: '[::1]', port: 5000, repository: 'a/b/c' }],
    [`[fe80::1]/x@${D}`, { registry: '[fe80::1]', host: '[fe80::1]', repository: 'x' }],
    [`localhost/x@${D}`, { registry: 'localhost', host: 'localhost', repository: 'x' }],
    [`localhost:5000/deep/nested/path/to/profile@${D}`, { registry: 'localhost:5000', host: 'localhost', port: 5000, repository: 'deep/nested/path/to/profile' }],
    [`Registry.Example.COM/x@${D}`, { registry: 'registry.example.com', host: 'registry.example.com', repository: 'x' }],
    [`r.io/a_b/c__d/e-f/g--h/i.j@${D}`, { registry: 'r.io', host: 'r.io', repository: 'a_b/c__d/e-f/g--h/i.j' }],
  ];
  for (const [input, want] of ok) {
    it(input.slice(0, 60), () => {
      const r = parseReference(input);
      assert.equal(r.registry, want.registry);
      assert.equal(r.host, want.host);
      assert.equal(r.port, want.port);
      assert.equal(r.repository, want.repository);
      assert.equal(r.digest, D);
      assert.ok(Object.isFrozen(r));
    });
  }
});

describe('parseReference refuses everything else with InvalidArgument and a reason', () => {
  const bad: [string, ErrorReason][] = [
    ['', 'REFERENCE_INVALID'],
    [`r.io/p:latest`, 'TAG_NOT_DIGEST'],
    [`r.io/p:latest@${D}`, 'TAG_NOT_DIGEST'],
    [`ubuntu@${D}`, 'REFERENCE_INVALID'],
    [`library/ubuntu@${D}`, 'REFERENCE_INVALID'],
    [`r.io/p@sha256:${'A'.repeat(64)}`, 'REFERENCE_INVALID'],
    [`r.io/p@sha256:${'a'.repeat(63)}`, 'REFERENCE_INVALID'],
    [`r.io/p@sha512:${'a'.repeat(128)}`, 'REFERENCE_INVALID'],
    [`r.io/p@md5:abc`, 'REFERENCE_INVALID'],
    [` r.io/p@${D}`, 'REFERENCE_INVALID'],
    [`r.io/p @${D}`, 'REFERENCE_INVALID'],
    [`r.io/p\n@${D}`, 'REFERENCE_INVALID'],
    [`r.io/../p@${D}`, 'REFERENCE_INVALID'],
    [`r.io/a/./p@${D}`, 'REFERENCE_INVALID'],
    [`r.io//p@${D}`, 'REFERENCE_INVALID'],
    [`r.io/p/@${D}`, 'REFERENCE_INVALID'],
    [`r.io/UPPER@${D}`, 'REFERENCE_INVALID'],
    [`r.io/-lead@${D}`, 'REFERENCE_INVALID'],
    [`r.io/a..b@${D}`, 'REFERENCE_INVALID'],
    [`r.io:0/p@${D}`, 'REFERENCE_INVALID'],
    [`r.io:70000/p@${D}`, 'REFERENCE_INVALID'],
    [`r.io:http/p@${D}`, 'REFERENCE_INVALID'],
    [`[::1/p@${D}`, 'REFERENCE_INVALID'],
    // Bracketed text the URL parser refuses: it would pass the policy and fail every pull.
    [`[127.0.0.1]:5000/p@${D}`, 'REFERENCE_INVALID'],
    [`[..]/p@${D}`, 'REFERENCE_INVALID'],
    [`[1:2:3:4:5:6:7:8:9]/p@${D}`, 'REFERENCE_INVALID'],
    [`bad_host.io/p@${D}`, 'REFERENCE_INVALID'],
    // Spellings the URL parser reads as another address: the policy would judge one host, the client reach another.
    [`010.0.0.1:5000/p@${D}`, 'REFERENCE_INVALID'],
    [`127.1/p@${D}`, 'REFERENCE_INVALID'],
    [`0x7f.1/p@${D}`, 'REFERENCE_INVALID'],
    [`1:11/p@${D}`, 'REFERENCE_INVALID'],
    [`11.9/p@${D}`, 'REFERENCE_INVALID'],
    [`af.1/p@${D}`, 'REFERENCE_INVALID'],
    [`127.0.0.256/p@${D}`, 'REFERENCE_INVALID'],
    [`[0:0::1]:5000/p@${D}`, 'REFERENCE_INVALID'],
    [`[::FFFF:127.0.0.1]/p@${D}`, 'REFERENCE_INVALID'],
    [`xn--zz.example.com/p@${D}`, 'REFERENCE_INVALID'],
    [`r.io/p@${D}@${D}`, 'REFERENCE_INVALID'],
    [`r.io/${'a'.repeat(256)}@${D}`, 'REFERENCE_INVALID'],
    [`r.io/${'a/'.repeat(300)}p@${D}`, 'REFERENCE_INVALID'],
    [`r.io/p@${D}x`, 'REFERENCE_INVALID'],
  ];
  for (const [input, reason] of bad) {
    it(JSON.stringify(input.slice(0, 60)), () => {
      assert.throws(() => parseReference(input), spokeError({ code: 'InvalidArgument', reason }));
    });
  }
});

describe('reference properties', () => {
  const component = fc.stringMatching(/^[a-z0-9]{1,8}(?:[._-][a-z0-9]{1,8}){0,2}$/);
  const hex = fc.stringMatching(/^[0-9a-f]{64}$/);
  it('format(parse(x)) round-trips every valid reference', () => {
    fc.assert(
      fc.property(fc.array(component, { minLength: 1, maxLength: 4 }), fc.integer({ min: 1, max: 65535 }), hex, (path, port, h) => {
        const input = `reg.example.com:${port}/${path.join('/')}@sha256:${h}`;
        assert.equal(formatReference(parseReference(input)), input);
      }),
    );
  });
  it('never throws anything but InvalidArgument on arbitrary input', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 600 }), (s) => {
        try {
          parseReference(s);
        } catch (e) {
          assert.ok(e instanceof SpokeError && e.code === 'InvalidArgument' && (e.reason === 'REFERENCE_INVALID' || e.reason === 'TAG_NOT_DIGEST'));
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('parseRepositoryRef (push targets)', () => {
  it('splits registry, repository and tag', () => {
    assert.deepEqual(parseRepositoryRef('127.0.0.1:5000/a/b:v1'), { registry: '127.0.0.1:5000', repository: 'a/b', tag: 'v1' });
    assert.deepEqual(parseRepositoryRef('r.io/a/b'), { registry: 'r.io', repository: 'a/b', tag: undefined });
  });
  it('refuses short names and bad tags', () => {
    assert.throws(() => parseRepositoryRef('ubuntu:1'), spokeError({ code: 'InvalidArgument', reason: 'REFERENCE_INVALID' }));
    assert.throws(() => parseRepositoryRef('r.io/a:-bad'), spokeError({ code: 'InvalidArgument', reason: 'REFERENCE_INVALID' }));
  });
  it('refuses a digest: what is pushed gets the digest of its bytes, never one written in the target', () => {
    assert.throws(() => parseRepositoryRef(`r.io/a@sha256:${'0'.repeat(64)}`), spokeError({ code: 'InvalidArgument', reason: 'REFERENCE_INVALID' }));
    assert.throws(() => parseRepositoryRef(`r.io/a:v1@sha256:${'0'.repeat(64)}`), spokeError({ code: 'InvalidArgument', reason: 'REFERENCE_INVALID' }));
  });
});
