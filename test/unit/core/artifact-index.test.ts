// Checks on a multi-architecture profile index and the choice of this node's platform
// (docs/multi-arch.md): pure, on bytes written here.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkProfileIndex, MAX_INDEX_MANIFESTS, parsePlatform, selectPlatform, type Platform } from '../../../src/core/artifact.js';
import { CONFIG_MEDIA_TYPE, MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST, ociArchitecture } from '../../../src/core/constants.js';
import { sha256Digest, type Digest } from '../../../src/core/digest.js';
import { MAX_MANIFEST_BYTES } from '../../../src/core/limits.js';
import { SpokeError, type ErrorContext, type ErrorReason } from '../../../src/core/errors.js';
import { assertSpokeError } from '../../helpers/assert.js';
import { packIndex, packProfile } from '../../../src/publish/pack.js';

const D = sha256Digest('index') as Digest;

function entry(platform: Record<string, unknown> | undefined, over: Record<string, unknown> = {}): Record<string, unknown> {
  return { mediaType: MEDIA_TYPE_OCI_MANIFEST, digest: sha256Digest(JSON.stringify(platform ?? null)), size: 300, ...(platform ? { platform } : {}), ...over };
}

function index(manifests: unknown[], over: Record<string, unknown> = {}): Buffer {
  return Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPE_OCI_INDEX, manifests, ...over }));
}

/** Refused as SecurityProfileInvalid for `reason`, its context naming the index digest and holding `context`. */
const invalid =
  (reason: ErrorReason, context: ErrorContext = {}) =>
  (e: unknown) => {
    const err = assertSpokeError(e, { code: 'SecurityProfileInvalid', reason });
    assert.deepEqual(err.context, { digest: D, ...context }, err.message);
    return true;
  };

describe('checkProfileIndex', () => {
  it('refuses a member spelled as a known one but for case, in the index, an entry or its platform (Go readers take the last of the two)', () => {
    const amd = { os: 'linux', architecture: 'amd64' };
    for (const bad of [
      index([entry(amd)], { Manifests: [entry({ os: 'linux', architecture: 'arm64' })] }),
      index([entry(amd, { DIGEST: sha256Digest('other') })]),
      index([entry({ ...amd, Architecture: 'arm64' })]),
      index([entry({ ...amd, OS: 'windows' })]),
    ]) {
      assert.throws(() => checkProfileIndex(bad, D, MAX_MANIFEST_BYTES), (e: unknown) => assertSpokeError(e, { code: 'SecurityProfileInvalid', reason: 'MANIFEST_INVALID' }) !== undefined, bad.toString());
    }
  });

  it('accepts what packIndex writes and returns the platforms in order', () => {
    const a = packProfile(Buffer.from('{"defaultAction":"SCMP_ACT_ALLOW"}'), 'seccomp');
    const b = packProfile(Buffer.from('{"defaultAction":"SCMP_ACT_LOG"}'), 'seccomp');
    const packed = packIndex(
      [
        { platform: { os: 'linux', architecture: 'amd64' }, manifest: a.manifest },
        { platform: { os: 'linux', architecture: 'arm', variant: 'v7' }, manifest: b.manifest },
      ],
      'seccomp',
    );
    const r = checkProfileIndex(packed.bytes, packed.digest, MAX_MANIFEST_BYTES);
    assert.equal(r.artifactType, CONFIG_MEDIA_TYPE.seccomp);
    assert.deepEqual(
      r.manifests.map((m) => [m.digest, m.size, m.platform, m.artifactType]),
      [
        [a.manifestDigest, a.manifest.length, { os: 'linux', architecture: 'amd64' }, CONFIG_MEDIA_TYPE.seccomp],
        [b.manifestDigest, b.manifest.length, { os: 'linux', architecture: 'arm', variant: 'v7' }, CONFIG_MEDIA_TYPE.seccomp],
      ],
    );
  });

  it('refuses duplicate platforms, arm64/v8 and arm64 being one platform', () => {
    assert.throws(() => checkProfileIndex(index([entry({ os: 'linux', architecture: 'arm64' }), entry({ os: 'linux', architecture: 'arm64', variant: 'v8' })]), D, MAX_MANIFEST_BYTES), invalid('MANIFEST_INVALID', { path: 'manifests[1]' }));
    assert.throws(() => checkProfileIndex(index([entry({ os: 'linux', architecture: 'amd64' }), entry({ os: 'linux', architecture: 'amd64', variant: 'v1' })]), D, MAX_MANIFEST_BYTES), invalid('MANIFEST_INVALID', { path: 'manifests[1]' }));
    // Different variants of one architecture are different platforms.
    assert.equal(checkProfileIndex(index([entry({ os: 'linux', architecture: 'arm', variant: 'v6' }), entry({ os: 'linux', architecture: 'arm', variant: 'v7' })]), D, MAX_MANIFEST_BYTES).manifests.length, 2);
  });

  it('bounds the number of manifests and refuses an empty index', () => {
    const many = Array.from({ length: MAX_INDEX_MANIFESTS + 1 }, (_, i) => entry({ os: 'linux', architecture: `a${i}` }));
    assert.throws(() => checkProfileIndex(index(many), D, MAX_MANIFEST_BYTES), invalid('MANIFEST_INVALID', { limit: MAX_INDEX_MANIFESTS, actual: MAX_INDEX_MANIFESTS + 1 }));
    assert.doesNotThrow(() => checkProfileIndex(index(many.slice(0, MAX_INDEX_MANIFESTS)), D, MAX_MANIFEST_BYTES));
    assert.throws(() => checkProfileIndex(index([]), D, MAX_MANIFEST_BYTES), invalid('MANIFEST_INVALID'));
  });

  it('refuses nested indexes, missing platforms, external urls, other digests and oversized manifests', () => {
    const p = { os: 'linux', architecture: 'amd64' };
    // Each refusal names the member at fault (context.path), so the cases are told apart.
    const at = (path: string) => invalid('MANIFEST_INVALID', { path });
    assert.throws(() => checkProfileIndex(index([entry(p, { mediaType: MEDIA_TYPE_OCI_INDEX })]), D, MAX_MANIFEST_BYTES), invalid('MANIFEST_INVALID', { path: 'manifests[0].mediaType', expected: MEDIA_TYPE_OCI_MANIFEST }));
    assert.throws(() => checkProfileIndex(index([entry(undefined)]), D, MAX_MANIFEST_BYTES), at('manifests[0].platform'));
    assert.throws(() => checkProfileIndex(index([entry({ os: 'linux' })]), D, MAX_MANIFEST_BYTES), at('manifests[0].platform.architecture'));
    assert.throws(() => checkProfileIndex(index([entry({ os: 'Linux', architecture: 'amd64' })]), D, MAX_MANIFEST_BYTES), at('manifests[0].platform.os'));
    assert.throws(() => checkProfileIndex(index([entry(p, { urls: ['https://example.com/m'] })]), D, MAX_MANIFEST_BYTES), at('manifests[0].urls'));
    assert.throws(() => checkProfileIndex(index([entry(p, { digest: `sha512:${'a'.repeat(128)}` })]), D, MAX_MANIFEST_BYTES), at('manifests[0].digest'));
    assert.throws(() => checkProfileIndex(index([entry(p, { size: MAX_MANIFEST_BYTES + 1 })]), D, MAX_MANIFEST_BYTES), invalid('SIZE_LIMIT', { path: 'manifests[0].size', limit: MAX_MANIFEST_BYTES, actual: MAX_MANIFEST_BYTES + 1 }));
    assert.throws(() => checkProfileIndex(index([entry(p, { artifactType: 7 })]), D, MAX_MANIFEST_BYTES), at('manifests[0].artifactType'));
  });

  it('refuses what is not a strict OCI index', () => {
    const one = [entry({ os: 'linux', architecture: 'amd64' })];
    assert.throws(() => checkProfileIndex(index(one, { mediaType: MEDIA_TYPE_OCI_MANIFEST }), D, MAX_MANIFEST_BYTES), invalid('MANIFEST_INVALID', { expected: MEDIA_TYPE_OCI_INDEX }));
    assert.throws(() => checkProfileIndex(index(one, { schemaVersion: 1 }), D, MAX_MANIFEST_BYTES), invalid('MANIFEST_INVALID'));
    // The same list twice: read either way, it would be a valid index; the duplicate member alone is refused.
    const dup = Buffer.from(`{"schemaVersion":2,"mediaType":"${MEDIA_TYPE_OCI_INDEX}","manifests":${JSON.stringify(one)},"manifests":${JSON.stringify(one)}}`);
    assert.throws(() => checkProfileIndex(dup, D, MAX_MANIFEST_BYTES), invalid('MANIFEST_INVALID'));
  });
});

describe('selectPlatform', () => {
  const manifests = checkProfileIndex(
    index([entry({ os: 'linux', architecture: 'amd64' }), entry({ os: 'linux', architecture: 'arm64', variant: 'v8' }), entry({ os: 'linux', architecture: 'arm', variant: 'v6' }), entry({ os: 'linux', architecture: 'arm', variant: 'v7' })]),
    D,
    MAX_MANIFEST_BYTES,
  ).manifests;
  const pick = (p: Platform) => selectPlatform(manifests, p, D).platform;

  it("takes the node's os and architecture; arm64 matches arm64/v8", () => {
    assert.deepEqual(pick({ os: 'linux', architecture: 'amd64' }), { os: 'linux', architecture: 'amd64' });
    assert.deepEqual(pick({ os: 'linux', architecture: 'arm64' }), { os: 'linux', architecture: 'arm64', variant: 'v8' });
    assert.deepEqual(pick({ os: 'linux', architecture: 'arm', variant: 'v7' }), { os: 'linux', architecture: 'arm', variant: 'v7' });
  });

  it('refuses, naming the platform, when none or several could be meant', () => {
    for (const [node, name] of [
      [{ os: 'linux', architecture: 's390x' }, 'linux/s390x'],
      [{ os: 'windows', architecture: 'amd64' }, 'windows/amd64'],
      [{ os: 'linux', architecture: 'arm' }, 'linux/arm'], // v6 or v7: not guessed
      [{ os: 'linux', architecture: 'arm', variant: 'v5' }, 'linux/arm/v5'],
    ] as const) {
      assert.throws(
        () => selectPlatform(manifests, node, D),
        (e: unknown) => e instanceof SpokeError && e.code === 'SecurityProfileInvalid' && e.reason === 'PLATFORM_MISSING' && e.context.expected === name && e.message.includes(name),
      );
    }
  });
});

describe('platform names', () => {
  it('maps Node.js architectures to OCI names', () => {
    assert.equal(ociArchitecture('x64'), 'amd64');
    assert.equal(ociArchitecture('arm64'), 'arm64');
    assert.equal(ociArchitecture('ia32'), '386');
    assert.equal(ociArchitecture('ppc64'), 'ppc64le');
  });

  it('parses --platform values', () => {
    assert.deepEqual(parsePlatform('linux/arm/v7'), { os: 'linux', architecture: 'arm', variant: 'v7' });
    assert.deepEqual(parsePlatform('linux/amd64'), { os: 'linux', architecture: 'amd64' });
    for (const bad of ['amd64', 'linux/', 'linux/amd64/v1/x', 'Linux/amd64', 'linux/amd 64', '']) assert.equal(parsePlatform(bad), undefined, bad);
  });
});
