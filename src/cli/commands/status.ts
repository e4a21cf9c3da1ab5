// `spoke status`: is this node ready for OCI profiles? Config, policy, baseline, store and the
// shim (through its own CRI socket), each reported with what is wrong when it is not.

import { existsSync } from 'node:fs';
import { asSpokeError, isSpokeError, knownReason } from '../../core/errors.js';
import { decodeText, lintPolicy, parsePolicy } from '../../policy/index.js';
import { describeBackends } from '../../recorder/backend.js';
import { bpfSupport } from '../../recorder/bpf.js';
import { RuntimeCriClient, speaksHttp2 } from '../../recorder/cri.js';
import { effectiveDirRefusal } from '../../cri/effective-dir.js';
import { shimRecordingKey } from '../../cri/recording.js';
import { socketPathRefusal } from '../../cri/socket.js';
import { readCaBundle } from '../../registry/options.js';
import { nodeCredentials } from '../../registry/credentials.js';
import { blobBytes, ProfileStore } from '../../store/store.js';
import { emit, parseCommand } from '../args.js';
import { EXIT_FAILED } from '../errors.js';
import { MAX_NAMED_FILE_BYTES, readNamedFile } from '../read-file.js';
import { checkTrustedPlace, readTrustedFile } from '../trusted-file.js';
import { checkPinnedRuntimeDefault, loadBaseline } from '../start-checks.js';
import { shimFlags, shimFlagsRead, uncheckedFlags } from './shim-options.js';

const HELP = `usage: spoke status [--config F] [shim flags] [--json]

Checks this node the way the shim would use it, and every file a shim starting now would refuse
to start on, changing nothing (run it before a restart or an upgrade), and reports each part:
  policy          the node policy loads (file, hash, rule and signer counts), or the error with
                  file:line; signers whose key file or trusted root is gone or unusable are listed
                  (a running shim keeps the rest of the policy and fails pulls that need them:
                  SIGNER_UNAVAILABLE)
  baseline        the seccomp baseline decodes and validates
  authFile        the registry auth file reads and parses (only when configured)
  caFile          the registries' CA bundle reads and holds certificates that parse (only when
                  configured)
  runtimeDefault  the pinned runtime default profile reads and decodes (only when configured)
  recordingKey    the recording key reads and is a usable key, as the shim reads it with
                  --recording (--recording-key F, else the config's recordingKey): with
                  --recording, a missing or bad key fails; without, a bad one is only a
                  warning (warn; ok in --json, with warning and reason), since a shim without
                  --recording never reads it
  store           artifacts, bytes and how many are in use (and whether the in-use set is
                  complete); fails too when <seccompRoot>/spoke is one the shim would refuse
  listen          nothing or a socket at the listen path (a file of another type is refused)
  shim            the shim answers on its socket (runtime name and version through it) and
                  advertises RuntimeFeatures.security_profile_oci_artifact; an UNAVAILABLE
                  answer from it means the runtime behind it does not answer, unless the shim
                  marks the refusal as its own (overloaded, shutting down: reported with the
                  shim's reason); a server there that does not speak gRPC is NOT_GRPC
  recorder        which recording backends this node supports (bpf needs root, kernel BTF and
                  bpftrace; audit always works); informational, never a failure
A failed part names its file and reason. Exit 0 when every part is healthy, 1 otherwise.

options:
  --config F   node config (default /etc/spoke/config.yaml)
  --listen SOCK, --store DIR, --seccomp-root DIR, --baseline F, --policy F, --auth-file F,
  --ca-file F, --recording, --recording-key F
               the shim's flags naming what it checks at start, read as the shim reads them
               (each wins over its config key there as here): give status those the shim
               runs with. --recording: check for a shim run with --recording (the recording
               key is read only then)
  --upstream SOCK, --metrics ADDR, --log-level L, --annotations
               the shim's other flags, so that its whole command line can follow spoke
               status: read as the shim reads them (a value it refuses is refused), and not
               checked further, which a note line says (ignoredFlags in --json). A flag the
               shim does not take is refused
  --json       {ok, policy, baseline, authFile?, caFile?, runtimeDefault?, recordingKey?, store,
               listen, shim, recorder, ignoredFlags} as JSON; a failed part has {file, reason}
               when it has them (policy.signersUnavailable: [{name, file, why}] when signers
               are unavailable); ignoredFlags: the shim's flags given and not checked
               (["--upstream", …], [] when none)`;

interface Part {
  ok: boolean;
  detail: string;
  /** What is wrong in a part that does not fail (shown as warn). */
  warning?: string;
  [key: string]: unknown;
}

/**
 * The signers a running shim would hold as unavailable after a reload (key file gone, unreadable
 * or not a key: src/config/policy-holder.ts); empty when the file fails for another reason.
 */
function unavailableSigners(text: string, file: string): { name: string; file: string; why: string }[] {
  try {
    const p = parsePolicy(text, file, readNamedFile, { markUnavailableSigners: true });
    return Object.values(p.signers).flatMap((s) => (s.type === 'unavailable' ? [{ name: s.name, file: s.file, why: s.why }] : []));
  } catch {
    return [];
  }
}

/** How long each call of the shim check waits for its answer. */
const SHIM_CHECK_MS = 3000;

async function checkShim(socket: string): Promise<Part> {
  const client = new RuntimeCriClient(socket);
  try {
    const version = await client.rt('Version', { version: 'v1' }, SHIM_CHECK_MS);
    const status = await client.rt('Status', {}, SHIM_CHECK_MS);
    const feature = (status.features as { security_profile_oci_artifact?: boolean } | undefined)?.security_profile_oci_artifact === true;
    const runtime = `${String(version.runtime_name)} ${String(version.runtime_version)}`;
    return { ok: feature, detail: feature ? `answering on ${socket}; runtime ${runtime}` : `${socket} answers (runtime ${runtime}) but does not advertise security_profile_oci_artifact: not the spoke shim?`, runtime, feature };
  } catch (e) {
    const err = asSpokeError(e);
    // Something listens that is no gRPC server: an answer of another content type (NOT_GRPC), or,
    // where grpc-js found no connection, a server that does not speak HTTP/2 (an HTTP/1 one).
    const notHttp2 = err.reason === 'TRANSPORT' && (await speaksHttp2(socket, SHIM_CHECK_MS)) === false;
    if (err.reason === 'NOT_GRPC' || notHttp2) {
      const why = notHttp2 ? 'it does not speak HTTP/2' : `it answered with content-type ${String(err.context.contentType)}`;
      return { ok: false, detail: `${socket}: the socket is not a gRPC server, so not the spoke shim (${why})`, answering: false, reason: 'NOT_GRPC' };
    }
    // A status the shim gave itself, for another cause than its runtime: it marks those with their
    // reason (src/cri/unary.ts endWithStatus), its runtime's answers have none. TRANSPORT is any
    // transport failure, a registry's on a pull too, but Version and Status are forwarded and
    // reach no registry: here it is the runtime's (docs/shim.md#forwarding).
    const shimReason = knownReason(err.context.shimReason);
    if (shimReason !== undefined && shimReason !== 'TRANSPORT') {
      return { ok: false, detail: `${socket}: the shim refused the call itself (${shimReason}): ${String(err.context.grpcMessage)}`, answering: true, reason: shimReason };
    }
    // TRANSPORT, and DEADLINE without a connection: nothing answered on the socket. Otherwise the
    // shim took the call, and an UNAVAILABLE from it, or no answer in time over a connection that
    // is up, is its runtime's (docs/troubleshooting.md: name the part that is unhealthy).
    const answering = err.reason !== 'TRANSPORT' && (err.reason !== 'DEADLINE' || err.context.connected === true);
    const detail =
      err.reason === 'DEADLINE' && answering
        ? `${socket}: the shim takes calls, but no answer came within ${SHIM_CHECK_MS} ms: the runtime behind it hangs`
        : answering && err.code === 'Unavailable'
          ? `${socket}: the shim answers, but the runtime behind it is unavailable (the shim says: ${String(err.context.grpcMessage)})`
          : `${socket}: ${err.message}`;
    return { ok: false, detail, answering, ...(err.reason !== undefined ? { reason: err.reason } : {}) };
  } finally {
    client.close();
  }
}

export async function run(argv: string[]): Promise<number> {
  const { values, help } = parseCommand(argv, { ...shimFlags, json: { type: 'boolean' } }, HELP, [0, 0]);
  if (help) return 0;
  // The shim's command line, read as the shim reads it: each file checked below is the one a shim
  // given the same flags would read (a flag wins over the config's key), and a value the shim
  // refuses is refused here. Its flags that name nothing checked here are listed as such.
  // The shim's reading of the files it trusts (src/cli/trusted-file.ts), the node config first:
  // refused alike; its warnings are not parts of the status.
  const readTrusted = (file: string, maxBytes = MAX_NAMED_FILE_BYTES + 1): Buffer => readTrustedFile(file, 'file', { warn: () => {}, maxBytes });
  const { config, recording } = shimFlagsRead(values, HELP, readTrusted);
  const ignoredFlags = (Object.keys(uncheckedFlags) as (keyof typeof uncheckedFlags)[]).filter((f) => values[f] !== undefined).map((f) => `--${f}`);

  let policy: Part;
  try {
    // Read as the shim reads it: a file it would refuse (not UTF-8, or any user could have
    // written it, say) is not ok here either.
    const text = decodeText(readTrusted(config.policy), config.policy);
    const r = lintPolicy(text, config.policy, readTrusted);
    const first = r.errors[0];
    const unavailable = r.policy ? [] : unavailableSigners(text, config.policy);
    policy = r.policy
      ? { ok: true, detail: `${config.policy}: ${r.policy.rules.length} rule(s), ${Object.keys(r.policy.signers).length} signer(s), hash ${r.policy.hash.slice(0, 12)}`, hash: r.policy.hash }
      : unavailable.length > 0
        ? {
            ok: false,
            detail: `${config.policy}: signer(s) unavailable, pulls that need them fail closed (SIGNER_UNAVAILABLE): ${unavailable.map((s) => `${s.name}: ${s.why}`).join('; ')}`,
            signersUnavailable: unavailable,
          }
        : { ok: false, detail: first ? first.message : `${config.policy}: invalid` };
  } catch (e) {
    policy = { ok: false, detail: `${config.policy}: ${failure(e)}` };
  }

  // The files the shim reads at its start, by the functions it reads them with.
  const baseline = startCheck(config.baseline, (file) => loadBaseline(file, readTrusted));
  const configured: Record<string, Part> = {};
  if (config.authFile !== undefined) configured.authFile = startCheck(config.authFile, (file) => nodeCredentials(file, readTrusted));
  if (config.caFile !== undefined) configured.caFile = startCheck(config.caFile, (file) => readCaBundle(file, 'caFile', readTrusted));
  if (config.runtimeDefault !== undefined) configured.runtimeDefault = startCheck(config.runtimeDefault, (file) => checkPinnedRuntimeDefault(file, readTrusted));
  // Read by a shim with --recording only: a key such a shim would refuse fails status --recording,
  // and is a warning without it (a shim without --recording starts whatever the file holds).
  if (recording || config.recordingKey !== undefined) {
    const key = startCheck(config.recordingKey, (file) => shimRecordingKey(true, file, readTrusted));
    configured.recordingKey = recording || key.ok ? key : { ...key, ok: true, warning: key.detail, detail: `not read by a shim without --recording, which would refuse it: ${key.detail}` };
  }

  let store: Part;
  if (!existsSync(config.storeDir)) store = { ok: true, detail: `${config.storeDir}: not created yet (no pull so far)`, artifacts: 0, bytes: 0, inUse: 0 };
  else try {
    const s = new ProfileStore({ root: config.storeDir, readOnly: true });
    const entries = await s.list();
    const inUseComplete = (await s.inUseState()).complete;
    // Each blob once, as spoke_store_bytes and gc's maxStoreBytes count them: artifacts may share one.
    const bytes = blobBytes(entries);
    const inUse = entries.filter((e) => e.inUse.length > 0).length;
    const note = inUseComplete ? '' : '; in-use set incomplete until the shim rebuilds it from the runtime (gc and remove keep everything meanwhile)';
    store = { ok: true, detail: `${config.storeDir}: ${entries.length} artifact(s), ${bytes} B, ${inUse} in use${note}`, artifacts: entries.length, bytes, inUse, inUseComplete };
  } catch (e) {
    store = { ok: false, detail: `${config.storeDir}: ${asSpokeError(e).message}` };
  }
  // What a shim starting now would refuse to start on: check before a restart or an upgrade.
  const refusal = await effectiveDirRefusal(config.seccompRoot).catch((e: unknown) => asSpokeError(e));
  if (refusal !== undefined) store = { ...store, ok: false, detail: `${store.detail}; ${refusal.message}`, file: refusal.context.file, reason: refusal.reason };

  // lstat only: a socket there (the running shim's) is fine, any other file is refused at start.
  const listenRefusal = (await socketPathRefusal(config.listen).catch((e: unknown) => asSpokeError(e))) ?? socketPlaceRefusal(config.listen);
  const listen: Part = listenRefusal === undefined ? { ok: true, detail: existsSync(config.listen) ? `${config.listen}: a socket` : `${config.listen}: not there yet (bound at start)` } : failedPart(config.listen, listenRefusal);

  const shim = await checkShim(config.listen);
  const bpf = bpfSupport();
  const recorder: Part = { ok: true, detail: describeBackends(bpf), backends: bpf.ok ? ['bpf', 'audit'] : ['audit'], default: bpf.ok ? 'bpf' : 'audit' };
  const parts: Record<string, Part> = { policy, baseline, ...configured, store, listen, shim, recorder };
  const ok = Object.values(parts).every((p) => p.ok);
  const width = Math.max(...Object.keys(parts).map((n) => n.length));
  emit(values.json, { ok, ...parts, ignoredFlags }, () =>
    [
      ...Object.entries(parts).map(([name, p]) => `${!p.ok ? 'FAIL' : p.warning !== undefined ? 'warn' : 'ok  '} ${name.padEnd(width)} ${p.detail}${(!p.ok || p.warning !== undefined) && typeof p.reason === 'string' ? ` (reason ${p.reason})` : ''}`),
      ...(ignoredFlags.length > 0 ? [`note accepted, not checked (status checks nothing they name): ${ignoredFlags.join(', ')}`] : []),
    ].join('\n'),
  );
  return ok ? 0 : EXIT_FAILED;
}

/** Where the socket goes, judged as the shim judges it at start (checkTrustedPlace: the part there now; the rest is made then). */
function socketPlaceRefusal(listen: string): ReturnType<typeof asSpokeError> | undefined {
  try {
    checkTrustedPlace(listen, 'CRI socket');
    return undefined;
  } catch (e) {
    return asSpokeError(e);
  }
}

/** `check(file)` as the shim runs it at start: ok, or the refusal with its file (when there is one) and reason. */
function startCheck<F extends string | undefined>(file: F, check: (file: F) => unknown): Part {
  try {
    check(file);
    return { ok: true, detail: file ?? 'ok' };
  } catch (e) {
    return failedPart(file, asSpokeError(e));
  }
}

function failedPart(file: string | undefined, e: ReturnType<typeof asSpokeError>): Part {
  return { ok: false, detail: e.message, ...(file !== undefined ? { file } : {}), ...(e.reason !== undefined ? { reason: e.reason } : {}) };
}

/** What went wrong: spoke's own message, or a system error's code (ENOENT, EACCES, …). */
function failure(e: unknown): string {
  return isSpokeError(e) ? e.message : ((e as NodeJS.ErrnoException).code ?? asSpokeError(e).message);
}
