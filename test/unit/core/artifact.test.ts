import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkArtifactManifest, declaredKind, isImageIndex, ManifestDocument, refuseArchive } from '../../../src/core/artifact.js';
import { CONFIG_MEDIA_TYPE, MEDIA_TYPE_OCI_EMPTY, MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST, OCI_EMPTY_DIGEST } from '../../../src/core/constants.js';
import { sha256Digest, type Digest } from '../../../src/core/digest.js';
import { decodeStrictJson } from '../../../src/core/json.js';
import { SpokeError, type ErrorReason } from '../../../src/core/errors.js';
import { spokeError } from '../../helpers/assert.js';
import { packProfile } from '../../../src/publish/pack.js';

const L = sha256Digest('layer');
const C = sha256Digest('{}');
const D = sha256Digest('manifest') as Digest;
const MIB = 1024 * 1024;

function manifest(over: Record<string, unknown> = {}): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPE_OCI_MANIFEST,
      artifactType: CONFIG_MEDIA_TYPE.seccomp,
      config: { mediaType: CONFIG_MEDIA_TYPE.seccomp, digest: C, size: 2 },
      layers: [{ mediaType: 'application/json', digest: L, size: 100 }],
      ...over,
    }),
  );
}

const invalid = (reason: ErrorReason) => spokeError({ code: 'SecurityProfileInvalid', reason });

describe('checkArtifactManifest (KEP §5)', () => {
  it('accepts the KEP shape and the OCI 1.1 empty-config shape', () => {
    assert.equal(checkArtifactManifest(manifest(), D, 'seccomp', MIB).layer.digest, L);
    const empty = manifest({ config: { mediaType: MEDIA_TYPE_OCI_EMPTY, digest: OCI_EMPTY_DIGEST, size: 2 } });
    assert.equal(checkArtifactManifest(empty, D, 'seccomp', MIB).kind, 'seccomp');
  });
  it('refuses a member spelled as a known one but for case (Go readers take the last of the two for that field)', () => {
    const other = sha256Digest('other layer');
    for (const over of [
      { Layers: [{ mediaType: 'application/json', digest: other, size: 100 }] },
      { CONFIG: { mediaType: CONFIG_MEDIA_TYPE.seccomp, digest: C, size: 2 } },
      { ArtifactType: CONFIG_MEDIA_TYPE.apparmor },
      // Go folds the Kelvin sign and the long s as k and s.
      { ſchemaVersion: 2 },
      { layers: [{ mediaType: 'application/json', digest: L, size: 100, Digest: other }] },
      { config: { mediaType: CONFIG_MEDIA_TYPE.seccomp, digest: C, size: 2, SIZE: 3 } },
    ]) {
      assert.throws(() => checkArtifactManifest(manifest(over), D, 'seccomp', MIB), invalid('MANIFEST_INVALID'), JSON.stringify(over));
    }
    // Other unknown members are ignored, as the OCI image spec asks.
    assert.equal(checkArtifactManifest(manifest({ layerz: [], extra: 1 }), D, 'seccomp', MIB).layer.digest, L);
  });
  it('accepts any layer media type (judged by its bytes later)', () => {
    const m = manifest({ layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: L, size: 1 }] });
    assert.doesNotThrow(() => checkArtifactManifest(m, D, 'seccomp', MIB));
  });
  const bad: [string, Record<string, unknown>, ErrorReason][] = [
    ['docker manifest', { mediaType: 'application/vnd.docker.distribution.manifest.v2+json' }, 'MANIFEST_INVALID'],
    ['index', { mediaType: 'application/vnd.oci.image.index.v1+json' }, 'MANIFEST_INVALID'],
    ['schema 1', { schemaVersion: 1 }, 'MANIFEST_INVALID'],
    ['kind mismatch', { artifactType: undefined, config: { mediaType: CONFIG_MEDIA_TYPE.apparmor, digest: C, size: 2 } }, 'KIND_MISMATCH'],
    ['disagreeing artifactType', { artifactType: CONFIG_MEDIA_TYPE.apparmor }, 'KIND_MISMATCH'],
    ['unknown config', { artifactType: undefined, config: { mediaType: 'application/vnd.unknown.config.v1+json', digest: C, size: 2 } }, 'KIND_MISMATCH'],
    ['no layers', { layers: [] }, 'MANIFEST_INVALID'],
    ['two layers', { layers: [{ mediaType: 'a/b', digest: L, size: 1 }, { mediaType: 'a/b', digest: L, size: 1 }] }, 'MANIFEST_INVALID'],
    ['urls', { layers: [{ mediaType: 'a/b', digest: L, size: 1, urls: ['http://x'] }] }, 'MANIFEST_INVALID'],
    ['sha512', { layers: [{ mediaType: 'a/b', digest: `sha512:${'a'.repeat(128)}`, size: 1 }] }, 'MANIFEST_INVALID'],
    ['oversized layer', { layers: [{ mediaType: 'a/b', digest: L, size: MIB + 1 }] }, 'SIZE_LIMIT'],
    ['oversized config', { config: { mediaType: CONFIG_MEDIA_TYPE.seccomp, digest: C, size: MIB + 1 } }, 'SIZE_LIMIT'],
    ['negative size', { layers: [{ mediaType: 'a/b', digest: L, size: -1 }] }, 'MANIFEST_INVALID'],
    ['fractional size', { layers: [{ mediaType: 'a/b', digest: L, size: 1.5 }] }, 'MANIFEST_INVALID'],
  ];
  for (const [name, over, reason] of bad) {
    it(`refuses ${name}`, () => {
      assert.throws(() => checkArtifactManifest(manifest(over), D, 'seccomp', MIB), invalid(reason));
    });
  }
  it('refuses duplicate members and trailing data', () => {
    assert.throws(() => checkArtifactManifest(Buffer.from('{"schemaVersion":2,"schemaVersion":2}'), D, 'seccomp', MIB), invalid('JSON_INVALID'));
    assert.throws(() => checkArtifactManifest(Buffer.concat([manifest(), Buffer.from('{}')]), D, 'seccomp', MIB), invalid('JSON_INVALID'));
  });
});

describe('refuseArchive', () => {
  it('refuses gzip, zstd and tar magic, accepts JSON', () => {
    assert.throws(() => refuseArchive(Buffer.from([0x1f, 0x8b, 8, 0]), D), invalid('ARCHIVE_REFUSED'));
    assert.throws(() => refuseArchive(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0]), D), invalid('ARCHIVE_REFUSED'));
    const tar = Buffer.alloc(1024);
    tar.write('ustar', 257, 'latin1');
    assert.throws(() => refuseArchive(tar, D), invalid('ARCHIVE_REFUSED'));
    assert.doesNotThrow(() => refuseArchive(Buffer.from('{"defaultAction":"SCMP_ACT_ALLOW"}'), D));
  });
});

describe('strict JSON', () => {
  it('names the path of a nested duplicate', () => {
    assert.throws(
      () => decodeStrictJson(Buffer.from('{"syscalls":[{"names":[]},{"names":[],"names":[]}]}'), 'profile'),
      (e: unknown) => spokeError({ reason: 'JSON_INVALID' })(e) && (e as SpokeError).context.path === 'syscalls[1].names',
    );
  });
  it('treats escaped duplicates as duplicates and allows equal keys in sibling objects', () => {
    assert.throws(() => decodeStrictJson(Buffer.from('{"a":1,"\\u0061":2}'), 'x'), (e: unknown) => spokeError({ reason: 'JSON_INVALID' })(e) && (e as SpokeError).context.path === 'a');
    assert.deepEqual(decodeStrictJson(Buffer.from('[{"a":1},{"a":2}]'), 'x'), [{ a: 1 }, { a: 2 }]);
  });
  it('refuses bad UTF-8 and trailing data, allows trailing whitespace', () => {
    assert.throws(() => decodeStrictJson(Buffer.from([0x22, 0xc3, 0x28, 0x22]), 'x'), spokeError({ code: 'SecurityProfileInvalid', reason: 'JSON_INVALID' }));
    assert.throws(() => decodeStrictJson(Buffer.from('{} x'), 'x'), spokeError({ code: 'SecurityProfileInvalid', reason: 'JSON_INVALID' }));
    assert.deepEqual(decodeStrictJson(Buffer.from('{}\n\t '), 'x'), {});
  });
});

describe('packProfile', () => {
  it('is deterministic and shaped as the KEP artifact', () => {
    const a = packProfile(Buffer.from('{"defaultAction":"SCMP_ACT_ALLOW"}'), 'seccomp');
    const b = packProfile(Buffer.from('{"defaultAction":"SCMP_ACT_ALLOW"}'), 'seccomp');
    assert.equal(a.manifestDigest, b.manifestDigest);
    const checked = checkArtifactManifest(a.manifest, a.manifestDigest, 'seccomp', MIB);
    assert.equal(checked.layer.annotations?.['org.opencontainers.image.title'], 'profile.json');
    assert.equal(checked.layer.mediaType, 'application/json');
    assert.equal(checked.artifactType, CONFIG_MEDIA_TYPE.seccomp);
  });
});

describe('declaredKind / isImageIndex', () => {
  it('read a manifest as the strict check does: a manifest with a byte order mark is refused by the check and read by neither', () => {
    // The pull judges the requested kind apart from the content (a mismatch is no verdict on the
    // digest): a reader that failed where the check succeeds would hand the check the request's kind.
    const bom = Buffer.from([0xef, 0xbb, 0xbf]);
    const withBom = Buffer.concat([bom, manifest()]);
    assert.throws(() => checkArtifactManifest(withBom, D, 'seccomp', MIB), spokeError({ code: 'SecurityProfileInvalid', reason: 'JSON_INVALID' }));
    assert.equal(declaredKind(withBom), undefined);
    assert.equal(isImageIndex(Buffer.concat([bom, Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPE_OCI_INDEX, manifests: [] }))])), false);
    // What the strict check refuses, they do not read either (duplicate members: the last would win in JSON.parse).
    const duplicate = Buffer.from(`{"artifactType":"${CONFIG_MEDIA_TYPE.seccomp}","artifactType":"${CONFIG_MEDIA_TYPE.apparmor}"}`);
    assert.equal(declaredKind(duplicate), undefined);
  });
});

describe('ManifestDocument', () => {
  it('gives each reading what the bytes give it, decoding once, and the same error every time it is asked', () => {
    const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPE_OCI_INDEX, artifactType: CONFIG_MEDIA_TYPE.apparmor, manifests: [] }));
    const cases = [
      manifest(),
      manifest({ config: { mediaType: MEDIA_TYPE_OCI_EMPTY, digest: OCI_EMPTY_DIGEST, size: 2 } }),
      manifest({ layers: [] }),
      index,
      Buffer.from('{"schemaVersion":2,"schemaVersion":2}'),
      Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), manifest()]),
      Buffer.from('not json'),
    ];
    const outcome = (f: () => unknown) => {
      try {
        return { value: f() };
      } catch (e) {
        return { code: (e as SpokeError).code, reason: (e as SpokeError).reason, message: (e as Error).message };
      }
    };
    for (const bytes of cases) {
      const document = new ManifestDocument(bytes, `manifest ${D}`);
      assert.equal(isImageIndex(document), isImageIndex(bytes));
      assert.equal(declaredKind(document), declaredKind(bytes));
      assert.deepEqual(outcome(() => checkArtifactManifest(document, D, 'seccomp', MIB)), outcome(() => checkArtifactManifest(bytes, D, 'seccomp', MIB)));
      const first = outcome(() => document.value());
      const again = outcome(() => document.value());
      assert.deepEqual(again, first);
      if ('value' in first) assert.equal(again.value, first.value, 'the one decoding, not a second');
    }
  });
});
