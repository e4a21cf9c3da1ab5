// The controller-side wiring of the recording reconciler (flags and start-up), for
// `spoke controller` to call — cli/ is the only place that may build a registry client.

import type { KeyObject } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { KubeConfig } from '@kubernetes/client-node';
import { SpokeError, isSpokeError } from '../core/errors.js';
import { DEFAULT_PROOF_TTL_SECONDS } from '../controller/recording.js';
import { MAX_RECORDING_PROOF_TTL_SECONDS } from '../core/recording-proof.js';
import { MAX_SCOPE_BYTES, parseKeyScope, SCOPE_SUFFIX, scopeAllows } from '../controller/signing-scope.js';
import { readRecordingKey } from '../cri/recording.js';
import type { RecordingController } from '../controller/recording-kube.js';
import type { ProfileBinding } from '../controller/types.js';
import { signingKey } from '../publish/signing.js';
import { UsageError } from './errors.js';
import { publisherRegistry } from './wiring.js';

/** Flags `spoke controller` adds for recordings. */
export const recordingControllerFlags = {
  'recording-repositories': { type: 'string' },
  'signing-keys': { type: 'string' },
  'plain-http': { type: 'boolean' },
  'ca-file': { type: 'string' },
  'auth-file': { type: 'string' },
  'recording-key': { type: 'string' },
  'recording-proof-ttl': { type: 'string' },
} as const;

export const RECORDING_CONTROLLER_HELP = `  --recording-key F   the cluster's recording key (32 to 4096 bytes, a mounted Secret; every
                    node's shim holds the same bytes as recordingKey). The pod webhook signs
                    each recording marking with it (HMAC-SHA256 over namespace, pod, recording,
                    containers, expiry) and results are accepted only from pods it marked.
                    Without it no pod is marked for recording
  --recording-proof-ttl S  seconds a marking lets nodes start the pod's containers under the
                    logging profile (default 3600); later restarts run under the pod's own profile
  --recording-repositories LIST  comma-separated repositories ProfileRecordings may publish to;
                    {namespace} is the recording's namespace; a trailing / allows everything
                    below (e.g. registry.example.com/profiles/{namespace}/). Empty: recordings fail
  --signing-keys DIR  directory of PEM private keys (a mounted Secret); spec.publish.signWith
                    names a file in it (default /etc/spoke/signing-keys). A key NAME signs only
                    for the namespaces listed in NAME.namespaces beside it (one per line, or *)
  --auth-file F     registry credentials for pushing recorded profiles (docker config.json)
  --plain-http, --ca-file F   registry transport options for pushing`;

export interface RecordingControllerFlagValues {
  'recording-key'?: string;
  'recording-proof-ttl'?: string;
  'recording-repositories'?: string;
  'signing-keys'?: string;
  'plain-http'?: boolean;
  'ca-file'?: string;
  'auth-file'?: string;
}

/**
 * Loads the key `dir/name` (a key of the mounted Secret) for a recording in `namespace`, reading
 * the key and its scope file `dir/name.namespaces` on every use, so a rotated Secret is picked
 * up. A key signs only for the namespaces its scope file lists (src/controller/signing-scope.ts),
 * and is handed out parsed and checked as `spoke sign` checks its key (KEY_INVALID otherwise):
 * the recording's SigningKeyUsable condition then means the key can sign, and a key that cannot
 * fails the recording before anything is pushed unsigned.
 */
export function signingKeyLoader(dir: string): (name: string, namespace: string) => Promise<KeyObject> {
  return async (name, namespace) => {
    if (!/^[A-Za-z0-9][-._A-Za-z0-9]{0,252}$/.test(name) || name === '..' || name.endsWith(SCOPE_SUFFIX)) {
      throw new SpokeError('InvalidArgument', `bad signing key name ${JSON.stringify(name)}`, {}, { reason: 'OBJECT_INVALID' });
    }
    const path = join(dir, name);
    let size: number;
    try {
      size = statSync(path).size;
    } catch {
      throw new SpokeError('NotFound', `no signing key ${name} in ${dir}`, { file: path }, { reason: 'FILE_UNREADABLE' });
    }
    const scopeFile = `${path}${SCOPE_SUFFIX}`;
    const scopeText = readScopeText(scopeFile);
    if (!scopeAllows(scopeText === undefined ? undefined : parseKeyScope(scopeText, scopeFile), namespace)) {
      const why = scopeText === undefined ? `it has no scope file ${name}${SCOPE_SUFFIX} beside it, so it signs for no namespace` : `${name}${SCOPE_SUFFIX} does not list it`;
      throw new SpokeError('PermissionDenied', `signing key ${name} may not sign for namespace ${namespace}: ${why}`, { file: scopeFile, namespace }, { reason: 'KEY_NOT_ALLOWED' });
    }
    return readSigningKey(path, name, size);
  };
}

const MAX_KEY_BYTES = 64 * 1024;

/** The private key in `path` (`size` bytes), parsed and checked for strength; KEY_INVALID otherwise. */
function readSigningKey(path: string, name: string, size: number): KeyObject {
  if (size > MAX_KEY_BYTES) throw new SpokeError('InvalidArgument', `signing key ${name} is larger than 64 KiB`, { file: path, limit: MAX_KEY_BYTES }, { reason: 'KEY_INVALID' });
  try {
    return signingKey(readFileSync(path, 'utf8'));
  } catch (e) {
    // signing.ts says "signing key is not …" / "signing key: RSA key of …": name the key.
    if (isSpokeError(e) && e.reason === 'KEY_INVALID') {
      const what = e.message.startsWith('signing key') ? e.message.slice('signing key'.length) : `: ${e.message}`;
      throw new SpokeError(e.code, `signing key ${name}${what}`, { ...e.context, file: path }, { reason: e.reason });
    }
    throw e;
  }
}

/**
 * What `spoke controller` says at start about the keys in `dir`: each key that signs for no
 * namespace (no scope file), whose scope file does not parse, or that cannot sign (not a PEM
 * private key, or too weak), so that none waits for a recording to be found. A missing
 * directory says nothing: recordings then fail as they name keys.
 */
export function signingKeyWarnings(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch {
    return [];
  }
  const warnings: string[] = [];
  // A mounted Secret's own entries start with a dot (..data, ..<timestamp>); its keys are links.
  for (const name of names.filter((n) => !n.startsWith('.') && !n.endsWith(SCOPE_SUFFIX))) {
    const path = join(dir, name);
    const st = statSync(path, { throwIfNoEntry: false });
    if (!st?.isFile()) continue;
    const scopeFile = `${path}${SCOPE_SUFFIX}`;
    try {
      const text = readScopeText(scopeFile);
      if (text === undefined) {
        warnings.push(`signing key ${name} has no ${name}${SCOPE_SUFFIX} beside it: it signs for no namespace`);
        continue;
      }
      parseKeyScope(text, scopeFile);
    } catch (e) {
      warnings.push(`signing key ${name}: ${(e as Error).message}`);
      continue;
    }
    try {
      readSigningKey(path, name, st.size);
    } catch (e) {
      warnings.push((e as Error).message);
    }
  }
  return warnings;
}

/** A key's scope file, undefined when there is none; one larger than MAX_SCOPE_BYTES is refused. */
function readScopeText(file: string): string | undefined {
  const size = statSync(file, { throwIfNoEntry: false })?.size;
  if (size === undefined) return undefined;
  if (size > MAX_SCOPE_BYTES) throw new SpokeError('InvalidArgument', `${file} is larger than ${MAX_SCOPE_BYTES} bytes`, { file, limit: MAX_SCOPE_BYTES, actual: size }, { reason: 'OPTION_INVALID' });
  return readFileSync(file, 'utf8');
}

/** --recording-key and --recording-proof-ttl, checked before anything starts. */
export function recordingProofFlags(values: RecordingControllerFlagValues): { recordingKey: Buffer | undefined; proofTtlSeconds: number } {
  const ttlText = values['recording-proof-ttl'] ?? String(DEFAULT_PROOF_TTL_SECONDS);
  const proofTtlSeconds = /^[0-9]{1,9}$/.test(ttlText) ? Number(ttlText) : NaN;
  if (!(proofTtlSeconds >= 60 && proofTtlSeconds <= MAX_RECORDING_PROOF_TTL_SECONDS)) throw new UsageError(`--recording-proof-ttl must be 60..${MAX_RECORDING_PROOF_TTL_SECONDS} seconds`);
  return { recordingKey: values['recording-key'] === undefined ? undefined : readRecordingKey(values['recording-key']), proofTtlSeconds };
}

/** Starts the recording reconciler next to the binding webhook (shares its binding cache). */
export async function startRecordingControllerFromFlags(
  values: RecordingControllerFlagValues,
  kc: KubeConfig,
  bindings: { get(namespace: string, name: string): ProfileBinding | undefined },
  logFn: (event: Record<string, unknown>) => void,
  recordingKey: Buffer | undefined,
): Promise<{ controller: RecordingController; close(): Promise<void> }> {
  if (!recordingKey) logFn({ msg: 'no --recording-key: no pod is marked for recording and no recording result counts', level: 'warning' });
  const keysDir = values['signing-keys'] ?? '/etc/spoke/signing-keys';
  for (const msg of signingKeyWarnings(keysDir)) logFn({ msg, level: 'warning' });
  const { startRecordingController } = await import('../controller/recording-kube.js');
  const registry = publisherRegistry(values);
  const allowedRepositories = (values['recording-repositories'] ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const controller = startRecordingController(kc, {
    registry,
    allowedRepositories,
    signingKey: signingKeyLoader(keysDir),
    bindings,
    log: logFn,
    ...(recordingKey ? { recordingKey } : {}),
  });
  return {
    controller,
    close: async () => {
      await controller.stop();
      await registry.close();
    },
  };
}
