// Named trust material (`signers:`): public keys and keyless identities (docs/signatures.md,
// docs/configuration.md). Files are read through the injected `readFile`; everything else is pure.

import { createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { isAbsolute, resolve, dirname } from 'node:path';
import type { Segment } from './schema.js';
import type { YamlFile } from './schema-yaml.js';
import type { KeylessSigner, PublicKeySigner, PublicKeyType, SignerSpec, TimeSource, UnavailableSigner } from './types.js';
import { SpokeError } from '../core/errors.js';
import { jsonSyntaxFault } from '../core/json.js';
import { acceptedKeyType } from '../core/key-type.js';

export const MAX_KEY_FILE_BYTES = 64 * 1024;
export const MAX_TRUSTED_ROOT_BYTES = 4 * 1024 * 1024;
export const TRUSTED_ROOT_MEDIA_TYPE_PREFIX = 'application/vnd.dev.sigstore.trustedroot+json';

export type ReadFile = (path: string) => Buffer;

/** A signer as policy/node-policy.schema.json admits it (names, lengths and enums already checked). */
export interface SignerYaml {
  publicKey?: string;
  keyless?: { trustedRoot: string; issuer: string; subject?: string; subjectRegExp?: string; timeSource?: TimeSource };
}

/** What a signer read from disk, for the policy hash. */
export interface SignerFile {
  readonly signer: string;
  readonly path: string;
  readonly bytes: Buffer;
}

export interface SignerContext {
  readonly doc: YamlFile;
  readonly readFile: ReadFile;
  /** Relative file names are resolved against this file's directory. */
  readonly policyFile: string;
  /**
   * Reloads: a key file or trusted root that cannot be read or used makes its signer
   * `unavailable` (fail closed) instead of failing the whole file, which would keep the last
   * good policy and so keep trusting a key that was removed.
   */
  readonly markUnavailable?: boolean;
}

export function resolveFrom(policyFile: string, name: string): string {
  return isAbsolute(name) ? name : resolve(dirname(resolve(policyFile)), name);
}

export function parseSigner(ctx: SignerContext, name: string, signer: SignerYaml): { spec: SignerSpec; file: SignerFile } {
  const { doc } = ctx;
  const at: Segment[] = ['signers', name];
  const line = doc.lineOf(at, { atKey: true });
  if ((signer.publicKey === undefined) === (signer.keyless === undefined)) doc.fail(at, 'give exactly one of publicKey or keyless', { atKey: true });
  if (signer.publicKey !== undefined) {
    const keyAt = [...at, 'publicKey'];
    const keyLine = doc.lineOf(keyAt);
    const file = resolveFrom(ctx.policyFile, signer.publicKey);
    return material(ctx, name, line, file, () => {
      const bytes = readBounded(ctx, file, MAX_KEY_FILE_BYTES, keyLine, keyAt);
      const { pem, key, keyType } = parsePublicKey(bytes, (why) => doc.failAt(keyLine, keyAt, `${file}: ${why}`));
      const spec: PublicKeySigner = { type: 'publicKey', name, line, file, publicKeyPem: pem, publicKey: key, keyType };
      return { spec, file: { signer: name, path: file, bytes } };
    });
  }
  const keyless = signer.keyless!;
  const rootAt = [...at, 'keyless', 'trustedRoot'];
  const rootLine = doc.lineOf(rootAt);
  const file = resolveFrom(ctx.policyFile, keyless.trustedRoot);
  // The identity is checked first: an error there is the policy's, never "unavailable".
  const identity = keylessIdentity(doc, keyless, [...at, 'keyless']);
  return material(ctx, name, line, file, () => {
    const bytes = readBounded(ctx, file, MAX_TRUSTED_ROOT_BYTES, rootLine, rootAt);
    const trustedRoot = parseTrustedRoot(bytes, (why) => doc.failAt(rootLine, rootAt, `${file}: ${why}`), identity.timeSource);
    const spec: KeylessSigner = { type: 'keyless', name, line, file, trustedRoot, ...identity };
    return { spec, file: { signer: name, path: file, bytes } };
  });
}

/**
 * Reads and parses a signer's key material; with `markUnavailable`, a failure makes the signer
 * unavailable, and the reason (not the bytes) goes into the policy hash, so verdicts cached for
 * the key as it was never match again.
 */
function material(ctx: SignerContext, name: string, line: number, file: string, read: () => { spec: SignerSpec; file: SignerFile }): { spec: SignerSpec; file: SignerFile } {
  if (!ctx.markUnavailable) return read();
  try {
    return read();
  } catch (e) {
    const why = (e as Error).message.slice(0, 500);
    const spec: UnavailableSigner = { type: 'unavailable', name, line, file, why };
    return { spec, file: { signer: name, path: file, bytes: Buffer.from(`unavailable: ${why}`, 'utf8') } };
  }
}

function keylessIdentity(doc: YamlFile, k: NonNullable<SignerYaml['keyless']>, at: Segment[]): Pick<KeylessSigner, 'issuer' | 'subject' | 'subjectRegExp' | 'subjectRegExpSource' | 'timeSource'> {
  checkIssuer(k.issuer, (why) => doc.fail([...at, 'issuer'], why));
  if ((k.subject === undefined) === (k.subjectRegExp === undefined)) doc.fail(at, 'give exactly one of subject or subjectRegExp', { atKey: true });
  const source = k.subjectRegExp;
  const subjectRegExp = source === undefined ? undefined : compileAnchored(source, (why) => doc.fail([...at, 'subjectRegExp'], why));
  return { issuer: k.issuer, subject: k.subject, subjectRegExp, subjectRegExpSource: source, timeSource: k.timeSource ?? 'any' };
}

function readBounded(ctx: SignerContext, file: string, max: number, line: number, path: readonly Segment[]): Buffer {
  let bytes: Buffer;
  try {
    bytes = ctx.readFile(file);
  } catch (e) {
    // The reader's own refusal (a file any user could have written) keeps its code and reason.
    if (e instanceof SpokeError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    ctx.doc.failAt(line, path, `cannot read ${file} (${code ?? (e as Error).message})`);
  }
  if (bytes.length > max) ctx.doc.failAt(line, path, `${file} is larger than ${max} bytes`);
  return bytes;
}

/**
 * One PEM `PUBLIC KEY` block (SPKI; what `cosign generate-key-pair` and `openssl pkey -pubout`
 * write). Private keys and certificates are refused even though node:crypto would derive a
 * public key from them: a private key does not belong on a node, and a certificate's validity
 * would be silently ignored.
 */
export function parsePublicKey(bytes: Buffer, onError: (why: string) => never): { pem: string; key: KeyObject; keyType: PublicKeyType } {
  const text = bytes.toString('utf8');
  const labels = [...text.matchAll(/-----BEGIN ([A-Z0-9 ]+)-----/g)].map((m) => m[1]);
  if (labels.length === 0) onError('not a PEM file (expected -----BEGIN PUBLIC KEY-----)');
  if (labels.some((l) => l!.includes('PRIVATE'))) onError('this is a private key; give the public key (openssl pkey -pubout)');
  if (labels.length > 1) onError(`expected one PEM block, found ${labels.length}`);
  if (labels[0] === 'RSA PUBLIC KEY') onError('PKCS#1 "RSA PUBLIC KEY" is not accepted; convert to SPKI: openssl rsa -RSAPublicKey_in -pubout');
  if (labels[0] !== 'PUBLIC KEY') onError(`PEM block "${labels[0]}" is not a public key (expected "PUBLIC KEY", SPKI)`);
  let key: KeyObject;
  try {
    key = createPublicKey({ key: text, format: 'pem' });
  } catch (e) {
    onError(`not a valid public key (${(e as Error).message})`);
  }
  const accepted = acceptedKeyType(key);
  if ('refused' in accepted) return onError(accepted.refused);
  return { pem: text, key, keyType: accepted.type };
}

/**
 * A sigstore trusted root: JSON, the trustedroot media type, at least one certificate authority,
 * and the authorities that can vouch for a signing time under `timeSource` (keyless without a
 * verified time never checks the chain: docs/signatures.md): timestamp authorities for `tsa`,
 * transparency logs for `tlog`, at least one of the two for `any`. Every certificate decodable
 * X.509, every log key a public key. Returned deeply frozen.
 */
export function parseTrustedRoot(bytes: Buffer, onError: (why: string) => never, timeSource: TimeSource = 'any'): unknown {
  let root: unknown;
  try {
    root = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    onError(jsonSyntaxFault(e));
  }
  if (!isObject(root)) onError('must be a JSON object');
  const mediaType = root.mediaType;
  if (typeof mediaType !== 'string' || !mediaType.startsWith(TRUSTED_ROOT_MEDIA_TYPE_PREFIX)) {
    onError(`mediaType must start with ${TRUSTED_ROOT_MEDIA_TYPE_PREFIX}, got ${JSON.stringify(mediaType)?.slice(0, 80)}`);
  }
  const listed = (field: string) => Array.isArray(root[field]) && (root[field] as unknown[]).length > 0;
  if (timeSource === 'tsa' && !listed('timestampAuthorities')) onError('timestampAuthorities must list at least one authority (timeSource tsa: signatures need an RFC 3161 timestamp)');
  if (timeSource === 'tlog' && !listed('tlogs')) onError('tlogs must list at least one transparency log (timeSource tlog: signatures need a log entry)');
  if (timeSource === 'any' && !listed('timestampAuthorities') && !listed('tlogs')) {
    onError('list at least one timestamp authority or transparency log (keyless signatures need a verified signing time)');
  }
  const tlogs = root.tlogs ?? [];
  if (!Array.isArray(tlogs)) onError('tlogs must be a list');
  tlogs.forEach((log: unknown, i: number) => {
    const raw = isObject(log) && isObject(log.publicKey) ? log.publicKey.rawBytes : undefined;
    if (typeof raw !== 'string') onError(`tlogs[${i}].publicKey.rawBytes must be a base64 string`);
    try {
      createPublicKey({ key: Buffer.from(raw, 'base64'), format: 'der', type: 'spki' });
    } catch {
      onError(`tlogs[${i}].publicKey.rawBytes is not a DER public key`);
    }
    if (!isObject(log) || !isObject(log.logId) || typeof log.logId.keyId !== 'string') onError(`tlogs[${i}].logId.keyId must be a base64 string`);
  });
  for (const field of ['certificateAuthorities', 'timestampAuthorities'] as const) {
    const list = root[field] ?? (field === 'timestampAuthorities' ? [] : undefined);
    if (!Array.isArray(list) || (field === 'certificateAuthorities' && list.length === 0)) onError(`${field} must list at least one authority`);
    list.forEach((authority: unknown, i: number) => {
      const at = `${field}[${i}].certChain.certificates`;
      const certs = isObject(authority) && isObject(authority.certChain) ? authority.certChain.certificates : undefined;
      if (!Array.isArray(certs) || certs.length === 0) onError(`${at} must list at least one certificate`);
      certs.forEach((cert: unknown, j: number) => {
        const raw = isObject(cert) ? cert.rawBytes : undefined;
        if (typeof raw !== 'string') onError(`${at}[${j}].rawBytes must be a base64 string`);
        try {
          new X509Certificate(Buffer.from(raw, 'base64'));
        } catch {
          onError(`${at}[${j}].rawBytes is not a DER X.509 certificate`);
        }
      });
    });
  }
  return deepFreeze(root);
}

/** OIDC issuers are https URLs (the schema checks the scheme), compared exactly as written (no normalization). */
function checkIssuer(issuer: string, onError: (why: string) => never): void {
  if (!URL.canParse(issuer)) onError(`${JSON.stringify(issuer)} is not a URL`);
}

/**
 * `subjectRegExp` must be written anchored (`^...$`) and must stay anchored: a top-level
 * alternation (`^a|b$`) anchors only each end, so it is refused. Compiled with `u`.
 */
export function compileAnchored(source: string, onError: (why: string) => never): RegExp {
  if (!source.startsWith('^') || !source.endsWith('$') || isEscaped(source, source.length - 1)) {
    onError('must be anchored: start with ^ and end with $ (an unanchored pattern matches any subject containing it)');
  }
  if (hasTopLevelAlternation(source)) onError('a top-level "|" unanchors the pattern; group the alternatives: ^(?:a|b)$');
  try {
    return new RegExp(source, 'u');
  } catch (e) {
    return onError(`does not compile (${(e as Error).message})`);
  }
}

function isEscaped(s: string, i: number): boolean {
  let n = 0;
  while (i - 1 - n >= 0 && s[i - 1 - n] === '\\') n++;
  return n % 2 === 1;
}

function hasTopLevelAlternation(s: string): boolean {
  let depth = 0;
  let inClass = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\') {
      i++;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
    } else if (c === '[') inClass = true;
    else if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === '|' && depth === 0) return true;
  }
  return false;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Freezes plain objects and arrays recursively (not class instances such as KeyObject or RegExp). */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    const proto = Object.getPrototypeOf(value);
    if (Array.isArray(value) || proto === Object.prototype || proto === null) {
      Object.freeze(value);
      for (const v of Object.values(value)) deepFreeze(v);
    }
  }
  return value;
}
