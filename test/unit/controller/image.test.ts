// Image matching by canonical form: every spelling that reaches the same registry and
// repository is the same image; nothing else is (no prefix, no host name inside a path).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { canonicalImage, imageMatches, parseImage, parseImageTarget } from '../../../src/controller/image.js';
import { spokeError } from '../../helpers/assert.js';

const DIGEST = `sha256:${'d'.repeat(64)}`;
const matches = (target: string, image: string) => imageMatches(parseImageTarget(target), parseImage(image));
/** As the webhook selects: a container image that does not parse is selected by `*` only. */
function selects(target: string, image: string): boolean {
  try {
    return matches(target, image);
  } catch {
    return false;
  }
}

describe('canonical image form', () => {
  const same: [string, string][] = [
    ['nginx:1', 'docker.io/library/nginx:1'],
    ['nginx:1', 'index.docker.io/library/nginx:1'],
    ['nginx:1', 'registry-1.docker.io/library/nginx:1'],
    ['nginx:1', 'docker.io:443/nginx:1'],
    ['nginx:1', 'Docker.IO/library/nginx:1'],
    ['nginx:1', 'registry-1.docker.io:443/nginx:1'],
    ['acme/web:2', 'index.docker.io/acme/web:2'],
    ['Registry.Example.com/team/app:v1', 'registry.example.com:443/team/app:v1'],
    ['registry.example.com/team/app', 'REGISTRY.example.com:443/team/app'],
    [`nginx@${DIGEST}`, `registry-1.docker.io/library/nginx@${DIGEST}`],
  ];
  for (const [a, b] of same) {
    it(`${a} and ${b} are one image`, () => {
      assert.equal(canonicalImage(parseImage(a)), canonicalImage(parseImage(b)));
      assert.equal(matches(a, b), true);
      assert.equal(matches(b, a), true);
    });
  }

  const different: [string, string][] = [
    ['web', 'web-evil'],
    ['web', 'web/sub'],
    ['acme/web', 'acme/web-evil:1'],
    ['acme/web', 'acme/web/sub:1'],
    ['registry.example.com/web', 'registry.example.com/web-evil'],
    ['registry.example.com/web', 'registry.example.com/web/sub'],
    ['registry.example.com:5000/team/app', 'registry.example.com/team/app:v2'],
    ['registry.example.com:8443/team/app', 'registry.example.com/team/app'],
    // a host name inside a path is a path component, not a registry
    ['docker.io/library/nginx', 'evil.example.com/docker.io/library/nginx'],
    ['registry.example.com/team/app', 'evil.example.com/registry.example.com/team/app'],
    ['registry.example.com/team/app', 'localhost/registry.example.com/team/app'],
    ['nginx', 'quay.io/nginx'],
    ['nginx', 'myorg/nginx'],
    ['quay.io/nginx', 'quay.io/library/nginx'],
  ];
  for (const [target, image] of different) {
    it(`${target} does not select ${image}`, () => assert.equal(matches(target, image), false));
  }

  it('tags and digests as before: repository targets take any, tag targets their tag (latest implied), digest targets their digest', () => {
    assert.equal(matches('index.docker.io/nginx', `nginx:1.25@${DIGEST}`), true);
    assert.equal(matches('docker.io/nginx:latest', 'nginx'), true);
    assert.equal(matches('nginx:latest', `nginx@${DIGEST}`), false);
    assert.equal(matches('registry-1.docker.io/library/nginx:1.25', 'nginx:1.26'), false);
    assert.equal(matches(`nginx@${DIGEST}`, 'nginx:1.25'), false);
  });

  it('refuses a registry host that cannot be told from a path once lowercased', () => {
    assert.throws(() => parseImage('MyOrg/app'), spokeError({ code: 'InvalidArgument', reason: 'REFERENCE_INVALID' }));
  });
});

// ---- properties ----

const component = fc.stringMatching(/^[a-z0-9]{1,6}(?:[._-][a-z0-9]{1,4})?$/);
const tag = fc.option(fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9._-]{0,8}$/), { nil: undefined });
const digest = fc.option(fc.stringMatching(/^[a-f0-9]{64}$/).map((h) => `sha256:${h}`), { nil: undefined });
const host = fc.oneof(
  fc.constantFrom('docker.io', 'index.docker.io', 'registry-1.docker.io', 'localhost', 'quay.io', 'registry.example.com', '[::1]'),
  fc.tuple(component.filter((c) => /^[a-z0-9]+$/.test(c)), fc.constantFrom('com', 'io', 'net')).map(([a, b]) => `${a}.${b}`),
);
const port = fc.constantFrom(undefined, 443, 5000);
const arbImage = fc.record({ host: fc.option(host, { nil: undefined }), port, path: fc.array(component, { minLength: 1, maxLength: 3 }), tag, digest });

function spell(i: { host: string | undefined; port: number | undefined; path: string[]; tag: string | undefined; digest: string | undefined }): string {
  const h = i.host === undefined ? '' : `${i.host}${i.port === undefined ? '' : `:${i.port}`}/`;
  return `${h}${i.path.join('/')}${i.tag === undefined ? '' : `:${i.tag}`}${i.digest === undefined ? '' : `@${i.digest}`}`;
}

/** Another spelling of the same image: host case, `:443`, Docker Hub aliases, `library/`. */
function respell(text: string, choice: { upper: boolean; port443: boolean; alias: 0 | 1 | 2 | 3; library: boolean }): string {
  const ref = parseImage(text);
  let host = ref.domain;
  let path = ref.path;
  if (host === 'docker.io') {
    host = ['docker.io', 'index.docker.io', 'registry-1.docker.io', ''][choice.alias] as string;
    if (!choice.library && path.startsWith('library/') && path.split('/').length === 2) path = path.slice('library/'.length);
  }
  if (host !== '' && choice.upper && !host.startsWith('[') && host !== 'localhost') host = host.toUpperCase();
  if (host !== '' && choice.port443 && !host.includes(':')) host = `${host}:443`;
  // Without a host, a one-component path is only Docker Hub's if `library/` can be implied;
  // keep a two-component path unambiguous by keeping the host when the first component looks like one.
  const first = path.split('/')[0] as string;
  if (host === '' && (first.includes('.') || first === 'localhost')) host = 'docker.io';
  const name = host === '' ? path : `${host}/${path}`;
  return `${name}${ref.tag === undefined ? '' : `:${ref.tag}`}${ref.digest === undefined ? '' : `@${ref.digest}`}`;
}

const spellingChoice = fc.record({ upper: fc.boolean(), port443: fc.boolean(), alias: fc.constantFrom(0 as const, 1 as const, 2 as const, 3 as const), library: fc.boolean() });

describe('property: canonical image form', () => {
  it('canonicalisation is idempotent', () => {
    fc.assert(
      fc.property(arbImage, (i) => {
        const c = canonicalImage(parseImage(spell(i)));
        assert.equal(canonicalImage(parseImage(c)), c);
      }),
      { numRuns: 1000 },
    );
  });

  it('every spelling of an image is the same image, and selects it', () => {
    fc.assert(
      fc.property(arbImage, spellingChoice, (i, choice) => {
        const a = spell(i);
        const b = respell(a, choice);
        assert.equal(canonicalImage(parseImage(b)), canonicalImage(parseImage(a)), `${a} vs ${b}`);
        assert.equal(matches(b, a), true);
        assert.equal(matches(a, b), true);
      }),
      { numRuns: 1000 },
    );
  });

  it('never a prefix, never a host name inside a path', () => {
    fc.assert(
      fc.property(arbImage, component, fc.constantFrom('-', '/', '.', '_'), host, (i, extra, sep, outer) => {
        const target = spell({ ...i, tag: undefined, digest: undefined });
        const longer = `${target}${sep}${extra}`;
        assert.equal(matches(target, longer), false, `${target} selected ${longer}`);
        const canonical = canonicalImage(parseImage(target));
        const nested = `${outer}/${canonical}`;
        assert.equal(selects(target, nested), false, `${target} selected ${nested}`);
      }),
      { numRuns: 1000 },
    );
  });
});
