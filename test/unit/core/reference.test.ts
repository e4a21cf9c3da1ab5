import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { SpokeError } from '../../../src/core/errors.js';
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
  const bad: [string, RegExp][] = [
    ['', /empty/],
    [`r.io/p:latest`, /not pinned by digest/],
    [`r.io/p:latest@${D}`, /tags are not accepted/],
    [`ubuntu@${D}`, /no registry host/],
    [`library/ubuntu@${D}`, /no registry host/],
    [`r.io/p@sha256:${'A'.repeat(64)}`, /64 lowercase hex/],
    [`r.io/p@sha256:${'a'.repeat(63)}`, /64 lowercase hex/],
    [`r.io/p@sha512:${'a'.repeat(128)}`, /must be sha256/],
    [`r.io/p@md5:abc`, /must be sha256/],
    [` r.io/p@${D}`, /whitespace/],
    [`r.io/p @${D}`, /whitespace/],
    [`r.io/p\n@${D}`, /whitespace/],
    [`r.io/../p@${D}`, /not allowed/],
    [`r.io/a/./p@${D}`, /not allowed/],
    [`r.io//p@${D}`, /empty path component/],
    [`r.io/p/@${D}`, /empty path component/],
    [`r.io/UPPER@${D}`, /lowercase/],
    [`r.io/-lead@${D}`, /lowercase/],
    [`r.io/a..b@${D}`, /lowercase/],
    [`r.io:0/p@${D}`, /out of range/],
    [`r.io:70000/p@${D}`, /out of range/],
    [`r.io:http/p@${D}`, /not a number/],
    [`[::1/p@${D}`, /IPv6/],
    [`bad_host.io/p@${D}`, /not a valid DNS name/],
    [`r.io/p@${D}@${D}`, /more than one/],
    [`r.io/${'a'.repeat(256)}@${D}`, /repository longer/],
    [`r.io/${'a/'.repeat(300)}p@${D}`, /longer than 512/],
    [`r.io/p@${D}x`, /64 lowercase hex/],
  ];
  for (const [input, why] of bad) {
    it(JSON.stringify(input.slice(0, 60)), () => {
      assert.throws(
        () => parseReference(input),
        (e: unknown) => e instanceof SpokeError && e.code === 'InvalidArgument' && why.test(e.message),
      );
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
          assert.ok(e instanceof SpokeError && e.code === 'InvalidArgument');
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
    assert.throws(() => parseRepositoryRef('ubuntu:1'), /no registry host/);
    assert.throws(() => parseRepositoryRef('r.io/a:-bad'), /invalid tag/);
  });
});
