// The shim's AppArmor operations (deps.ts AppArmorOps) on the real pieces: the structured profile
// library (src/profiles/apparmor: decode, intersect, name, render) and the apparmor_parser edge
// (src/apparmor/parser.ts: check, load, unload; src/apparmor/identity.ts: which parser names
// cover). They are imported on first use, so a shim that never sees an AppArmor profile never
// loads them.
//
// The node AppArmor baseline is the shipped `policy/apparmor-baseline.json`, found next to the
// shipped seccomp baseline (`defaultBaselinePath()`); there is no node config key for it yet
// (`baselinePath` lets a caller choose another file). It is read and validated on first use and
// again on reload(); a bad file keeps the last good one (or, with none, fails AppArmor profiles
// with FailedPrecondition).

import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { defaultBaselinePath } from '../config/node-config.js';
import { SpokeError, asSpokeError } from '../core/errors.js';
import { sha256Hex } from '../core/digest.js';
import { monotonicNow, type Logger, type MonotonicNow } from '../core/runtime.js';
import type { AppArmorOps, PreparedAppArmor } from './deps.js';
import { ParserSlots } from './parser-slots.js';

type Lib = typeof import('../profiles/apparmor/index.js');
type Parser = typeof import('../apparmor/parser.js');
type Identity = typeof import('../apparmor/identity.js');
type ParserIdentity = Awaited<ReturnType<Identity['identifyParser']>>;
type AppArmorProfile = ReturnType<Lib['decodeAppArmor']>;

export function defaultAppArmorBaselinePath(): string {
  return join(dirname(defaultBaselinePath()), 'apparmor-baseline.json');
}

export interface AppArmorOpsOptions {
  baselinePath?: string;
  /**
   * Reads the baseline, at first use and at each reload; default a plain read. The shim's reads
   * refuse a file any user could have written (src/cli/trusted-file.ts): the baseline bounds
   * every container's AppArmor profile. A SpokeError it throws is the refusal, reason kept.
   */
  readBaseline?: (path: string) => Buffer | Promise<Buffer>;
  logger?: Logger;
  /** Overrides for tests: parser binary, securityfs location, check timeout. */
  parser?: { parser?: string; securityfs?: string; timeoutMs?: number };
  /** The clock a timed-out check is remembered on (tests); default performance.now(). */
  monotonicNow?: MonotonicNow;
}

/** Checked texts are remembered by name (a name is the hash of the effective profile and the parser). */
const MAX_CHECKED = 1024;
/**
 * Prepared profiles are remembered by the parser's identity and the artifact's hash until the
 * baseline is reloaded, up to this many bytes of text: merging and rendering a large artifact
 * takes ~0.2 s of the shim's only thread, and the kubelet creates its containers again and again.
 */
const MAX_PREPARED_TEXT_BYTES = 16 * 1024 * 1024;
/**
 * A text the parser did not finish compiling in time is not compiled again for this long for the
 * namespace whose check it was: some small patterns spin apparmor_parser 3.0 until the timeout
 * (docs/apparmor.md), and the kubelet retries the create. The refusal stays transient: a parser
 * slowed by a busy node may do better later.
 */
const TIMED_OUT_MEMORY_MS = 10 * 60_000;
/**
 * Parser runs at once, checks and loads together: each may take a core until its timeout and as
 * much memory as the parser may use (src/apparmor/parser.ts), and two of those stay well inside
 * the shim unit's memory limit (docs/apparmor.md).
 */
const MAX_CONCURRENT_PARSERS = 2;
/** A signal that never fires: a caller that cannot go away. */
const NEVER_DROPPED = new AbortController().signal;

function cancelled(message: string): SpokeError {
  return new SpokeError('Unavailable', message, {}, { reason: 'CANCELLED' });
}

const CREATE_GONE = 'the create went away before its AppArmor profile was checked';
const LOAD_GONE = 'the create went away before its AppArmor profile was loaded';

/** A signal that fires, with a CANCELLED refusal as its reason, when `signal` fires. */
function cancelledWith(signal: AbortSignal, message: string): AbortSignal {
  const c = new AbortController();
  if (signal.aborted) c.abort(cancelled(message));
  else signal.addEventListener('abort', () => c.abort(cancelled(message)), { once: true });
  return c.signal;
}

/** `work`, or a CANCELLED refusal as soon as `signal` fires (the caller has gone; `work` goes on). */
function untilGone<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return work;
  if (signal.aborted) return Promise.reject(cancelled(CREATE_GONE));
  return new Promise<T>((resolve, reject) => {
    const gone = () => reject(cancelled(CREATE_GONE));
    signal.addEventListener('abort', gone, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', gone));
  });
}

export function createAppArmorOps(opts: AppArmorOpsOptions = {}): AppArmorOps & { reloadBaseline(): Promise<void>; identifyParserAgain(): void } {
  const baselinePath = opts.baselinePath ?? defaultAppArmorBaselinePath();
  let lib: Promise<Lib> | undefined;
  let parser: Promise<Parser> | undefined;
  let baseline: AppArmorProfile | undefined;
  let baselineGeneration = 0;
  let enabled: boolean | undefined;
  const checked = new Set<string>();
  // Texts the parser rejected, with its refusal: the compile is deterministic, and a text that
  // overflows the parser's state limit takes seconds of CPU to refuse, so a retried create must
  // not pay it again. Only the parser's own rejection is kept (a timeout or a missing binary is not).
  const rejected = new Map<string, SpokeError>();
  /** `key` (a text key, of a fixed form without `/`) for one source. */
  const ofSource = (key: string, source: string) => `${key}/${source}`;
  /**
   * Checks that ran out of time or were killed, by ofSource(text key, source), until `until`: the
   * source's retries of that text are refused until then.
   * Per source, not per text: a timeout says nothing about the text (a node made busy by another
   * namespace, which may even have asked for the same text at such a moment to time it out), so it
   * must not refuse the text to namespaces whose own check did not fail. Each namespace pays at
   * most one check of a spinning text per window, in its own turn (parser-slots.ts). Entries all
   * live TIMED_OUT_MEMORY_MS and are set anew at the end, so the map's order is expiry order: the
   * expired are dropped from its front, and past MAX_CHECKED the oldest goes.
   */
  const timedOut = new Map<string, { error: SpokeError; until: number }>();
  const rememberTimedOut = (key: string, source: string, error: SpokeError) => {
    const at = now();
    for (const [k, { until }] of timedOut) {
      if (until > at && timedOut.size < MAX_CHECKED) break;
      timedOut.delete(k);
    }
    const k = ofSource(key, source);
    timedOut.delete(k);
    timedOut.set(k, { error, until: at + TIMED_OUT_MEMORY_MS });
  };
  /**
   * Checks under way by ofSource(text key, source): creates of one profile from one source at once
   * share one parser run. Not across sources: a check waits in its source's turn (parser-slots.ts),
   * so a create joining another namespace's check would wait behind that namespace's burst of slow
   * texts, and a namespace could ask for another's text behind its own burst to hold that
   * namespace's creates there; its timeout, too, is its source's alone (timedOut). A check that
   * finds the text judged meanwhile by another source's check runs no parser (`checked`,
   * `rejected`). A check still waiting for a slot is dropped once every create waiting on it has
   * gone (`waiters` 0): texts that spin the parser must not hold back the creates that come after
   * them for nothing.
   */
  const checking = new Map<string, { done: Promise<void>; waiters: number; drop: AbortController }>();
  const slots = new ParserSlots(MAX_CONCURRENT_PARSERS);
  const now = opts.monotonicNow ?? monotonicNow;
  /** Prepared profiles by `<parser identity>/<artifact sha256>`. */
  let prepared = new Map<string, PreparedAppArmor>();
  let preparedBytes = 0;
  const forgetPrepared = () => {
    prepared = new Map();
    preparedBytes = 0;
  };
  const libOf = () => (lib ??= import('../profiles/apparmor/index.js'));

  /** Compiles `text` (its key `name:sha`) with the parser in a parser slot; remembers the outcome. */
  const check = async (key: string, text: string, dropped: AbortSignal, source: string): Promise<void> => {
    try {
      await slots.run(dropped, source, async () => {
        const parserModule = await parserOf();
        dropped.throwIfAborted();
        // Judged while it waited, by another source's check of the same text.
        if (checked.has(key)) return;
        const refusal = rejected.get(key);
        if (refusal !== undefined) throw refusal;
        await parserModule.checkWithParser(text, opts.parser ?? {});
      });
    } catch (e) {
      if (e instanceof SpokeError && e.code === 'SecurityProfileInvalid' && e.reason !== 'LIMIT_EXCEEDED') {
        if (rejected.get(key) !== e) {
          if (rejected.size >= MAX_CHECKED) rejected.clear();
          rejected.set(key, e);
        }
      } else if (e instanceof SpokeError && (e.reason === 'DEADLINE' || e.reason === 'APPARMOR_FAILED' || e.reason === 'LIMIT_EXCEEDED')) {
        // Out of time, killed by a signal (the OOM killer: a text whose compile blows up
        // memory), or out of the memory the parser may use (which a node with less to give fails
        // a good text with too): nothing sure about the text, but compiling it again at every
        // retry would take the shim's time or memory each time. Remembered for this check's
        // source only (timedOut): another namespace's create of the text is compiled in its own turn.
        const error = new SpokeError(e.code, `${e.message}; this profile is not compiled again for this namespace for ${TIMED_OUT_MEMORY_MS / 60_000} minutes`, e.context, { reason: e.reason });
        rememberTimedOut(key, source, error);
      }
      throw e;
    }
    if (checked.size >= MAX_CHECKED) checked.clear();
    checked.add(key);
  };
  const parserOf = () => (parser ??= import('../apparmor/parser.js'));
  let identityModule: Promise<Identity> | undefined;
  /** The identity last read, and the generation (identifyParserAgain) it was read in. */
  let identity: { read: Promise<ParserIdentity>; generation: number } | undefined;
  /** Raised by identifyParserAgain: an identity read in an earlier generation is read again whole, whatever the binary's stat says. */
  let generation = 0;
  let asking: Promise<ParserIdentity> | undefined;
  /**
   * The parser's identity, which names cover (src/apparmor/identity.ts): read at the first
   * profile, and again once the binary is another file (a package upgrade while the shim runs),
   * so that the profiles prepared from then on are named for the parser that compiles them. A
   * failed read is tried again at the next profile. Callers meanwhile share one look (its stat
   * runs on the thread pool): they go on in the order they asked, as the parser's turns expect.
   */
  const parserIdentity = (): Promise<ParserIdentity> => {
    if (asking !== undefined) return asking;
    const look = lookUpIdentity().finally(() => {
      if (asking === look) asking = undefined;
    });
    asking = look;
    return look;
  };
  const lookUpIdentity = async (): Promise<ParserIdentity> => {
    const m = await (identityModule ??= import('../apparmor/identity.js'));
    // Looks may overlap after a SIGHUP (identifyParserAgain): one that finds the identity read
    // again while it waited looks at the newer read, never answers with the one it waited on.
    for (;;) {
      const current = identity;
      const known = await current?.read.catch(() => undefined);
      if (identity !== current) continue;
      const fresh = known !== undefined && current!.generation === generation && (await m.sameParser(known, opts.parser ?? {}));
      if (identity !== current) continue;
      if (fresh) return known;
      const read = m.identifyParser(opts.parser ?? {});
      identity = { read, generation };
      const before = known && { version: known.version, identity: known.id };
      read.then(
        (now) => opts.logger?.log('info', 'apparmor_parser identified: AppArmor profiles are named for it', { parser: now.parser, version: now.version, identity: now.id, ...(before ? { before } : {}) }),
        () => undefined, // the profile that asked says why
      );
      return read;
    }
  };

  const readBaseline = async (): Promise<AppArmorProfile> => {
    const l = await libOf();
    let bytes: Buffer;
    try {
      bytes = await (opts.readBaseline ?? readFile)(baselinePath);
    } catch (e) {
      if (e instanceof SpokeError) throw e;
      throw new SpokeError('FailedPrecondition', `AppArmor baseline ${baselinePath}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { file: baselinePath }, { reason: 'FILE_UNREADABLE' });
    }
    try {
      const p = l.decodeAppArmor(bytes);
      l.validateAppArmorArtifact(p);
      return p;
    } catch (e) {
      const err = asSpokeError(e);
      throw new SpokeError('FailedPrecondition', `AppArmor baseline ${baselinePath}: ${err.message}`, { file: baselinePath }, { cause: e, reason: err.reason });
    }
  };

  return {
    async enabled(): Promise<boolean> {
      // The kernel's answer does not change while the node runs.
      enabled ??= (await parserOf()).kernelHasAppArmor(opts.parser?.securityfs);
      return enabled;
    },

    async prepare(artifact: Uint8Array, signal?: AbortSignal, source = '') {
      const l = await libOf();
      if (baseline === undefined) {
        const read = await readBaseline();
        // A reload that ended during this first read is newer: it stays.
        baseline ??= read;
      }
      const parserId = (await parserIdentity()).id;
      const preparedKey = `${parserId}/${sha256Hex(artifact)}`;
      const known = prepared.get(preparedKey);
      if (known !== undefined) return known;
      const against = baseline;
      const merged = l.intersectAppArmor(against, l.decodeAppArmor(artifact));
      const name = l.appArmorProfileName(merged.bytes, parserId);
      const text = l.renderAppArmor(merged.profile, name);
      const key = `${name}:${sha256Hex(Buffer.from(text, 'utf8'))}`;
      const refusal = rejected.get(key);
      if (refusal !== undefined) throw refusal;
      if (!checked.has(key)) {
        // Not once the text is known good: another namespace's check may have passed since.
        const mine = ofSource(key, source);
        const slow = timedOut.get(mine);
        if (slow !== undefined) {
          if (now() < slow.until) throw slow.error;
          timedOut.delete(mine);
        }
        if (signal?.aborted) throw cancelled(CREATE_GONE);
        let flight = checking.get(mine);
        if (flight === undefined) {
          const drop = new AbortController();
          const created = { waiters: 0, drop, done: Promise.resolve() };
          created.done = check(key, text, drop.signal, source).finally(() => {
            if (checking.get(mine) === created) checking.delete(mine);
          });
          created.done.catch(() => undefined); // its waiters see the outcome; a dropped one has none
          flight = created;
          checking.set(mine, flight);
        }
        const joined = flight;
        joined.waiters++;
        try {
          await untilGone(joined.done, signal);
        } finally {
          if (--joined.waiters === 0 && checking.get(mine) === joined) {
            // Gone from the map at once: a create of this text that comes next starts its own.
            checking.delete(mine);
            joined.drop.abort(cancelled('the AppArmor profile check was dropped: no create waits for it'));
          }
        }
      }
      const result: PreparedAppArmor = { name, text, parser: parserId, constrained: merged.constrained.map((c) => l.formatAppArmorConstraint(c)) };
      // Not when the baseline was reloaded while the parser ran: the result is the old baseline's.
      if (against === baseline) {
        if (preparedBytes + text.length > MAX_PREPARED_TEXT_BYTES) forgetPrepared();
        prepared.set(preparedKey, result);
        preparedBytes += text.length;
      }
      return result;
    },

    async load(profile: Pick<PreparedAppArmor, 'text' | 'parser'>, signal?: AbortSignal): Promise<{ warnings: readonly string[] }> {
      // A load compiles the text again, with a check's cost: it takes one of the checks' parser
      // slots (in a turn of their own: parser-slots.ts), so creates of many checked texts at once do not run
      // a parser each. Given up (CANCELLED) when the create has gone while it waited.
      return slots.run(signal === undefined ? NEVER_DROPPED : cancelledWith(signal, LOAD_GONE), undefined, async () => {
        // Asked under the name's lock and in the slot, just before the parser runs: a profile
        // waits for both after it was named, and a parser upgraded meanwhile would replace the
        // name's policy, under the containers a shim before this one confined by it, with its
        // own compile. Refused then; the create's retry names its profile for the new parser.
        const now = await parserIdentity();
        if (now.id !== profile.parser) {
          throw new SpokeError('Unavailable', `apparmor_parser ${now.parser} changed (now version ${now.version}) after the profile was named for the one before; the create is tried again`, {}, { reason: 'APPARMOR_PARSER_CHANGED' });
        }
        return (await parserOf()).loadProfile(profile.text, opts.parser ?? {});
      });
    },

    async unload(name: string): Promise<void> {
      await (await parserOf()).unloadProfile(name, opts.parser ?? {});
    },

    baselineGeneration: () => baselineGeneration,

    /**
     * The shim's SIGHUP: an edit of parser.conf or of the features file it pins changes how the
     * same binary compiles, which the one stat at each create does not see. The next AppArmor
     * profile reads the identity whole (a look under way is not joined: it may have read the
     * files before the edit), and a name made before is loaded only if it still matches
     * (APPARMOR_PARSER_CHANGED otherwise, docs/apparmor.md#the-parser-in-the-name).
     */
    identifyParserAgain(): void {
      generation++;
      asking = undefined;
    },

    async reloadBaseline(): Promise<void> {
      try {
        baseline = await readBaseline();
        baselineGeneration++;
        forgetPrepared();
        opts.logger?.log('info', 'AppArmor baseline reloaded', { baseline: baselinePath });
      } catch (e) {
        opts.logger?.log('error', 'AppArmor baseline not reloaded; keeping the last good one', { baseline: baselinePath, error: asSpokeError(e).message });
      }
    },
  };
}
