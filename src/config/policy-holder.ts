// Holds the current node policy and reloads it when its file or a key file changes (docs/configuration.md).
// An invalid file never replaces a good policy: the error is logged and the last good policy
// stays. At start there is no good policy to keep, so the constructor throws and the shim does
// not start. The policy file and every key file it names are watched (file-watch.ts).
//
// Revoked keys. "Last good policy" never means "a removed key is still trusted". After the
// first load, a key file or trusted root that cannot be read or used makes its signer
// `unavailable` (pulls that need it fail closed with SIGNER_UNAVAILABLE) while the rest of the
// policy loads. When the policy file itself is invalid, the last good text is parsed again
// against the key files as they are now, and a key file that changed since it was loaded counts
// as unavailable too (the admin replaced it; the old key is not kept). Start-up stays strict:
// no valid policy, no shim.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { asSpokeError, SpokeError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/runtime.js';
import { decodeText, parsePolicy, type Policy } from '../policy/index.js';
import type { UnavailableSigner } from '../policy/types.js';
import { FileWatch, type WatchDir } from './file-watch.js';

export interface PolicyHolderOptions {
  readonly file: string;
  readonly readFile?: (path: string) => Buffer;
  /** Watch the policy file's directory and those of its key files; default false. */
  readonly watch?: boolean;
  readonly logger?: Logger;
  /** Called after a reload that changed the policy (a different hash). */
  readonly onReload?: (policy: Policy, previous: Policy) => void;
  /** Quiet time after the last change event before reloading; default 200 ms. */
  readonly debounceMs?: number;
  /** With `watch`: how often the files' identities are compared (file-watch.ts); default 2000 ms. */
  readonly pollMs?: number;
  /** Directory watcher, injectable for tests; default node:fs watch (non-persistent). */
  readonly watchDir?: WatchDir;
}

export type ReloadResult = { readonly ok: true; readonly policy: Policy; readonly changed: boolean } | { readonly ok: false; readonly error: SpokeError };

export class PolicyHolder {
  private readonly file: string;
  private readonly readFile: (path: string) => Buffer;
  private readonly logger: Logger;
  private readonly onReload: ((policy: Policy, previous: Policy) => void) | undefined;
  private readonly watch: FileWatch | undefined;
  private policy: Policy | undefined;
  /** The text of the last valid policy file and the sha256 of each key file it was loaded with. */
  private lastGood: { text: string; keys: Map<string, string> } | undefined;

  /** Loads the policy now; throws SpokeError when the file is missing or invalid. */
  constructor(opts: PolicyHolderOptions) {
    this.file = resolve(opts.file);
    this.readFile = opts.readFile ?? ((p) => readFileSync(p));
    this.logger = opts.logger ?? silentLogger;
    this.onReload = opts.onReload;
    if (opts.watch === true) {
      this.watch = new FileWatch({
        what: 'policy',
        logger: this.logger,
        onChange: () => this.reload(),
        ...(opts.debounceMs !== undefined ? { debounceMs: opts.debounceMs } : {}),
        ...(opts.pollMs !== undefined ? { pollMs: opts.pollMs } : {}),
        ...(opts.watchDir !== undefined ? { watchDir: opts.watchDir } : {}),
      });
    }
    const first = this.reload();
    if (!first.ok) {
      this.watch?.close();
      throw first.error;
    }
  }

  /** The last good policy. */
  current(): Policy {
    if (this.policy === undefined) throw new SpokeError('FailedPrecondition', `no valid node policy has been loaded from ${this.file}`, {}, { reason: 'INVARIANT' });
    return this.policy;
  }

  /** Signers of the current policy whose key material is unavailable (see the header). */
  unavailableSigners(): UnavailableSigner[] {
    return Object.values(this.policy?.signers ?? {}).filter((s): s is UnavailableSigner => s.type === 'unavailable');
  }

  /**
   * Reads and validates the file again; on failure the last good policy stays (with the key files
   * checked again: see the header) and the error is returned (and logged).
   */
  reload(): ReloadResult {
    let next: Policy;
    let text: string;
    const keys = new Map<string, string>();
    const markUnavailableSigners = this.policy !== undefined;
    try {
      try {
        text = decodeText(this.readPolicyFile(), this.file);
        next = parsePolicy(text, this.file, (p) => remember(keys, p, (k) => this.readKey(k)), { markUnavailableSigners });
      } catch (e) {
        const error = asSpokeError(e, 'InvalidArgument');
        if (this.policy !== undefined) {
          this.logger.log('error', 'node policy not reloaded; keeping the last good policy', { file: this.file, error: error.message, hash: this.policy.hash });
          this.recheckKeys();
        }
        return { ok: false, error };
      }
      this.lastGood = { text, keys };
      const changed = this.adopt(next);
      return { ok: true, policy: this.policy!, changed };
    } finally {
      // What was read is what is watched from now on.
      this.watch?.commit();
    }
  }

  /** Makes `next` current when its hash differs (true then); logs what is unavailable in it. */
  private adopt(next: Policy): boolean {
    const previous = this.policy;
    if (previous !== undefined && previous.hash === next.hash) return false;
    this.policy = next;
    this.logger.log('info', previous === undefined ? 'node policy loaded' : 'node policy reloaded', { file: this.file, hash: next.hash, rules: next.rules.length });
    for (const s of this.unavailableSigners()) {
      this.logger.log('error', 'signer unavailable: pulls that need it fail closed', { signer: s.name, file: s.file, why: s.why });
    }
    if (previous !== undefined) this.onReload?.(next, previous);
    return true;
  }

  /** The policy file is invalid: the last good text again, against the key files as they are now. */
  private recheckKeys(): void {
    const good = this.lastGood;
    if (good === undefined) return;
    try {
      const read = (p: string): Buffer => {
        const bytes = this.readKey(p);
        const was = good.keys.get(p);
        if (was !== undefined && was !== sha256(bytes)) throw new Error(`${p} changed since the policy was loaded, and the policy file is invalid`);
        return bytes;
      };
      this.adopt(parsePolicy(good.text, this.file, read, { markUnavailableSigners: true }));
    } catch (e) {
      this.logger.log('error', 'key files of the last good policy not re-checked', { file: this.file, error: asSpokeError(e).message });
    }
  }

  /** Stops watching. */
  close(): void {
    this.watch?.close();
  }

  /** A key file, noted by the watch just before it is read. */
  private readKey(path: string): Buffer {
    this.watch?.note(path);
    return this.readFile(path);
  }

  private readPolicyFile(): Buffer {
    this.watch?.note(this.file);
    try {
      return this.readFile(this.file);
    } catch (e) {
      if (e instanceof SpokeError) throw e;
      const code = (e as NodeJS.ErrnoException).code;
      throw new SpokeError('InvalidArgument', `${this.file}: cannot read the node policy${code ? ` (${code})` : ''}`, { file: this.file }, { cause: e, reason: 'FILE_UNREADABLE' });
    }
  }
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * Reads a key file for a reload and notes what it held: its hash, or UNREADABLE when it could not
 * be read (a revoked key removed), so that recheckKeys trusts no bytes that appear there later.
 */
function remember(keys: Map<string, string>, path: string, read: (path: string) => Buffer): Buffer {
  try {
    const bytes = read(path);
    keys.set(path, sha256(bytes));
    return bytes;
  } catch (e) {
    keys.set(path, UNREADABLE);
    throw e;
  }
}

/** Never a sha256 hex. */
const UNREADABLE = 'unreadable';
