import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ERROR_CODES, SpokeError } from '../../../src/core/errors.js';
import { GrpcCode, toGrpcStatus } from '../../../src/cri/grpc-status.js';
import { credentialOf } from '../../../src/cri/owned.js';
import { decodeGrpcMessage, encodeFrame, encodeGrpcMessage, formatGrpcTimeout, parseFrames, parseGrpcTimeout } from '../../../src/cri/frame.js';
import { spokeError } from '../../helpers/assert.js';

describe('error → gRPC status (the one mapping)', () => {
  it('maps every code with the KEP prefixes', () => {
    const expect: Record<string, [number, string]> = {
      InvalidArgument: [GrpcCode.INVALID_ARGUMENT, 'SecurityProfileInvalid: '],
      SecurityProfileInvalid: [GrpcCode.INVALID_ARGUMENT, 'SecurityProfileInvalid: '],
      PermissionDenied: [GrpcCode.PERMISSION_DENIED, 'PermissionDenied: '],
      RegistryUnavailable: [GrpcCode.UNAVAILABLE, 'RegistryUnavailable: '],
      SignatureValidationFailed: [GrpcCode.FAILED_PRECONDITION, 'SignatureValidationFailed: '],
      Unauthenticated: [GrpcCode.UNAUTHENTICATED, 'Unauthenticated: '],
      FailedPrecondition: [GrpcCode.FAILED_PRECONDITION, 'FailedPrecondition: '],
      NotFound: [GrpcCode.NOT_FOUND, 'NotFound: '],
      Unavailable: [GrpcCode.UNAVAILABLE, 'Unavailable: '],
      Internal: [GrpcCode.INTERNAL, 'Internal: '],
    };
    for (const code of ERROR_CODES) {
      const s = toGrpcStatus(new SpokeError(code, 'boom\nline'));
      assert.equal(s.code, expect[code]![0], code);
      assert.equal(s.message, `${expect[code]![1]}boom line`);
    }
    assert.equal(toGrpcStatus(new Error('x')).code, GrpcCode.INTERNAL);
  });

  it('a status message carries no terminal controls or bidi overrides, and is cut to fit a header (a longer one reset the stream: INTERNAL instead of the KEP class)', () => {
    const s = toGrpcStatus(new SpokeError('SecurityProfileInvalid', 'profile: \x1b[2J\x1b]0;owned\x07\u202eOK'));
    assert.equal(s.message, 'SecurityProfileInvalid: profile: \\x1b[2J\\x1b]0;owned\\x07\\u202eOK');
    const long = toGrpcStatus(new SpokeError('SecurityProfileInvalid', `profile: unknown member ${'m'.repeat(100_000)}`));
    assert.equal(long.code, GrpcCode.INVALID_ARGUMENT);
    assert.ok(long.message.startsWith('SecurityProfileInvalid: profile: unknown member mmm'));
    assert.ok(long.message.length <= 1024, `${long.message.length} characters`);
  });

  it("the caller's deadline is DEADLINE_EXCEEDED; a pull's own total time stays RegistryUnavailable", () => {
    assert.equal(toGrpcStatus(new SpokeError('Unavailable', 'deadline exceeded', {}, { reason: 'DEADLINE' })).code, GrpcCode.DEADLINE_EXCEEDED);
    const flight = toGrpcStatus(new SpokeError('RegistryUnavailable', 'pull did not finish within 2000 ms', {}, { reason: 'DEADLINE' }));
    assert.deepEqual([flight.code, flight.message.startsWith('RegistryUnavailable: ')], [GrpcCode.UNAVAILABLE, true]);
  });

  it('the message ends with the reason, after any cut: pod events show it', () => {
    assert.equal(toGrpcStatus(new SpokeError('PermissionDenied', 'r.io/p@sha256:…: no rule allows it', {}, { reason: 'POLICY_DENIED' })).message, 'PermissionDenied: r.io/p@sha256:…: no rule allows it (reason POLICY_DENIED)');
    const long = toGrpcStatus(new SpokeError('SecurityProfileInvalid', `profile: unknown member ${'m'.repeat(100_000)}`, {}, { reason: 'PROFILE_INVALID' }));
    assert.ok(long.message.endsWith('…(cut) (reason PROFILE_INVALID)'), long.message.slice(-60));
    assert.ok(long.message.length <= 1024);
  });

  it('a message of many-byte characters is cut by its UTF-8 bytes, at a character boundary', () => {
    // A registry's error text may be in any script: 960 characters of it were up to 3,840 bytes.
    for (const unit of ['é', '名', '😀']) {
      const s = toGrpcStatus(new SpokeError('SecurityProfileInvalid', `profile: ${unit.repeat(5_000)}`, {}, { reason: 'PROFILE_INVALID' }));
      assert.ok(Buffer.byteLength(s.message, 'utf8') <= 1024, `${unit}: ${Buffer.byteLength(s.message, 'utf8')} bytes`);
      assert.ok(s.message.endsWith('…(cut) (reason PROFILE_INVALID)'), s.message.slice(-60));
      // A lone half of a surrogate pair does not survive a round trip through UTF-8.
      assert.equal(Buffer.from(s.message, 'utf8').toString('utf8'), s.message, `${unit}: a character was split`);
    }
  });
});

describe('AuthConfig → per-request credential', () => {
  const empty = { username: '', password: '', auth: '', serverAddress: '', identityToken: '', registryToken: '' };
  const IMAGE = `Registry.Example:5000/team/profile@sha256:${'a'.repeat(64)}`;
  it('honours the precedence and decodes auth', () => {
    assert.equal(credentialOf(undefined, IMAGE), undefined);
    assert.equal(credentialOf(empty, IMAGE), undefined);
    assert.deepEqual(credentialOf({ ...empty, username: 'u', password: 'p' }, IMAGE), { kind: 'basic', username: 'u', password: 'p' });
    assert.deepEqual(credentialOf({ ...empty, auth: Buffer.from('al:ice:pw').toString('base64') }, IMAGE), { kind: 'basic', username: 'al', password: 'ice:pw' });
    assert.deepEqual(credentialOf({ ...empty, identityToken: 'it', username: 'u' }, IMAGE), { kind: 'identityToken', token: 'it' });
    assert.deepEqual(credentialOf({ ...empty, registryToken: 'rt', identityToken: 'it' }, IMAGE), { kind: 'registryToken', token: 'rt' });
    assert.throws(() => credentialOf({ ...empty, auth: Buffer.from('nocolon').toString('base64') }, IMAGE), spokeError({ code: 'InvalidArgument', reason: 'CREDENTIALS_INVALID' }));
  });
  it("a credential whose server_address names another registry is not used: the pull goes out anonymous, as containerd's does", () => {
    const alice = { ...empty, username: 'alice', password: 'pw' };
    for (const serverAddress of ['https://registry.example:5000', 'registry.example:5000', 'REGISTRY.example:5000/team', 'https://registry.example:5000/v2/']) {
      assert.deepEqual(credentialOf({ ...alice, serverAddress }, IMAGE), { kind: 'basic', username: 'alice', password: 'pw' }, serverAddress);
    }
    for (const serverAddress of ['https://other.example', 'registry.example', 'registry.example:5001', 'https://registry.example.evil:5000', 'other.example/registry.example:5000']) {
      assert.equal(credentialOf({ ...alice, serverAddress }, IMAGE), undefined, serverAddress);
    }
    // Docker Hub's spellings are one registry.
    assert.ok(credentialOf({ ...alice, serverAddress: 'https://index.docker.io/v1/' }, `docker.io/library/p@sha256:${'b'.repeat(64)}`));
  });
  it('refuses what cannot go in a header as InvalidArgument (the kubelet must not retry it as a registry fault), without quoting it', () => {
    const refused = spokeError({ code: 'InvalidArgument', reason: 'CREDENTIALS_INVALID' });
    for (const auth of [
      { ...empty, registryToken: 'a\r\nX-Evil: 1' },
      { ...empty, registryToken: 'a\u0100Evil' },
      { ...empty, registryToken: 'aé Evil' },
      { ...empty, identityToken: 'a\u0000b' },
      { ...empty, username: 'u', password: 'p\nw' },
      { ...empty, username: 'u:v', password: 'p' },
    ]) {
      assert.throws(() => credentialOf(auth, IMAGE), (e: Error) => refused(e) && !/Evil|p\nw/.test(e.message));
    }
  });
});

describe('gRPC framing', () => {
  it('frames and unframes', () => {
    const f = Buffer.concat([encodeFrame(Buffer.from('ab')), encodeFrame(Buffer.alloc(0))]);
    assert.deepEqual(parseFrames(f).map((m) => m.payload.toString()), ['ab', '']);
    assert.throws(() => parseFrames(f.subarray(0, 4)), spokeError({ code: 'InvalidArgument', reason: 'FRAME_INVALID' }));
  });
  it('parses and formats grpc-timeout', () => {
    assert.equal(parseGrpcTimeout('100m'), 100);
    assert.equal(parseGrpcTimeout('2S'), 2000);
    assert.equal(parseGrpcTimeout('1H'), 3_600_000);
    assert.equal(parseGrpcTimeout('5000u'), 5);
    assert.equal(parseGrpcTimeout('123456789m'), undefined);
    assert.equal(parseGrpcTimeout('x'), undefined);
    assert.equal(formatGrpcTimeout(1500.2), '1501m');
    assert.equal(parseGrpcTimeout(formatGrpcTimeout(1e9)), 1_000_000_000);
  });
  it('a grpc-timeout past what a timer holds (2^31 - 1 ms, ~24.8 days) is that much: Node fires a longer timer at once', () => {
    assert.equal(parseGrpcTimeout('43200M'), 2 ** 31 - 1, "grpc-go's form of 30 days");
    assert.equal(parseGrpcTimeout('99999999H'), 2 ** 31 - 1);
    assert.equal(parseGrpcTimeout('595H'), 595 * 3_600_000);
  });
  it('percent-encodes grpc-message', () => {
    const s = 'PermissionDenied: 100% é\n';
    assert.equal(encodeGrpcMessage(s), 'PermissionDenied: 100%25 %C3%A9%0A');
    assert.equal(decodeGrpcMessage(encodeGrpcMessage(s)), s);
  });
});
