// The I/O edge of AppArmor (docs/apparmor.md): apparmor_parser to check, load and unload rendered profiles.
// The parser is always run with an argument array and the policy text on stdin; never a shell,
// never a temp file. Imports only src/core (and src/profiles for the name check); identity.ts
// says which parser it is.
//
// Flags (apparmor_parser 3.x):
//   check   --skip-kernel-load --skip-cache --abort-on-error --warn=rule-not-enforced [--features-file F]
//           (-Q -K: compile everything, load nothing, touch no cache; works without kernel AppArmor)
//   load    --replace --skip-cache --abort-on-error --warn=rule-not-enforced
//           (needs kernel AppArmor and CAP_MAC_ADMIN)
//   Both report the rule classes the kernel (or features file) does not enforce, as warnings.
//   unload  --remove                                         (stdin: an empty profile of that name)
//   identity --version; check's flags and --stdout on a fixed probe (src/apparmor/identity.ts)
// Every run is started through prlimit and choom (util-linux), which cap the parser's address
// space (PARSER_ADDRESS_SPACE_BYTES) and make it the first a memory kill takes: Node's spawn can
// set neither.

import { spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { SpokeError } from '../core/errors.js';
import { checkProfileName } from '../profiles/apparmor/index.js';

export const PARSER_CANDIDATES = ['/usr/sbin/apparmor_parser', '/sbin/apparmor_parser'] as const;
export const DEFAULT_SECURITYFS = '/sys/kernel/security/apparmor';
const MODULE_ENABLED = '/sys/module/apparmor/parameters/enabled';
const DEFAULT_TIMEOUT_MS = 30_000;
/** Where util-linux's prlimit and choom are looked for, each its own name in these directories. */
const UTIL_LINUX_DIRS = ['/usr/bin', '/bin'] as const;
/**
 * The address space each apparmor_parser process may use (RLIMIT_AS). The largest artifact of
 * literal paths spoke admits (1,024 paths, 256 KiB of them), rendered with the baseline, compiled
 * in 104 MiB and not in 96 here (apparmor_parser 3.0.8, x86_64); a few hundred short `**` globs
 * grow the parser past a gigabyte within its timeout. Past the cap the parser stops with
 * std::bad_alloc, a refusal of the text (memoryRefusal). docs/apparmor.md#render-check-load
 */
export const PARSER_ADDRESS_SPACE_BYTES = 160 * 1024 * 1024;
/** The parser's oom_score_adj: a memory kill in the shim's unit takes a parser before the shim. */
export const PARSER_OOM_SCORE_ADJ = 1000;
const MAX_OUTPUT_BYTES = 64 * 1024;

export interface ParserOptions {
  /** apparmor_parser binary; default: the first of PARSER_CANDIDATES that exists. */
  parser?: string;
  /** A features file (`--features-file`) to compile against instead of the kernel's or the built-in set. */
  featuresFile?: string;
  timeoutMs?: number;
  /** Where AppArmor's securityfs is mounted (tests). */
  securityfs?: string;
  /** The directories prlimit and choom are looked for in; default UTIL_LINUX_DIRS (tests). */
  utilLinuxDirs?: readonly string[];
}

export interface ParserRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Its output as written (a compiled profile is binary), the first MAX_OUTPUT_BYTES at most. */
  stdout: Buffer;
  /** It wrote more than MAX_OUTPUT_BYTES. */
  stdoutCut: boolean;
  stderr: string;
}

export interface CheckResult {
  /** Warnings apparmor_parser printed (e.g. rule classes this kernel would not enforce), each once. */
  warnings: string[];
}

/**
 * Rules of a class the kernel does not mediate (network, signal, mount, unix sockets on older or
 * other kernels) load without effect: the parser says so only when asked, once per rule.
 */
const WARN_NOT_ENFORCED = '--warn=rule-not-enforced';
/** At most this many distinct warnings are kept (a profile repeats one per rule). */
const MAX_WARNINGS = 16;

export function findApparmorParser(candidates: readonly string[] = PARSER_CANDIDATES): string | undefined {
  return candidates.find((p) => existsSync(p));
}

/** The binary `opts` name: its `parser`, else the first of PARSER_CANDIDATES that exists. */
export function parserPath(opts: ParserOptions): string {
  const p = opts.parser ?? findApparmorParser();
  if (p === undefined) throw new SpokeError('FailedPrecondition', `apparmor_parser not found (looked in ${PARSER_CANDIDATES.join(', ')})`, {}, { reason: 'APPARMOR_UNAVAILABLE' });
  return p;
}

/** Whether the running kernel has AppArmor enabled (securityfs present, module enabled). */
export function kernelHasAppArmor(securityfs: string = DEFAULT_SECURITYFS, moduleEnabled: string = MODULE_ENABLED): boolean {
  if (!existsSync(securityfs)) return false;
  try {
    return readFileSync(moduleEnabled, 'utf8').trim().startsWith('Y');
  } catch {
    return true; // securityfs is there; the parameter file is optional on some kernels
  }
}

/**
 * Runs apparmor_parser with `args`, `stdin` as its input. Output is capped; a timeout kills it.
 * The parser compiles in forked workers, so it runs in a process group of its own and the
 * timeout kills the group: a worker killed with the parent alone went on compiling, holding the
 * pipes, and the call never answered.
 */
export function runParser(args: readonly string[], stdin: string, opts: ParserOptions = {}): Promise<ParserRun> {
  const bin = parserPath(opts);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  // Asked here, not left to prlimit's exec: its failure would read as the parser's refusal.
  const st = statSync(bin, { throwIfNoEntry: false });
  if (st === undefined || !st.isFile() || (st.mode & 0o111) === 0) {
    return Promise.reject(new SpokeError('FailedPrecondition', `cannot run ${bin}: ${st === undefined ? 'no such file' : 'not an executable file'}`, {}, { reason: 'APPARMOR_UNAVAILABLE' }));
  }
  const dirs = opts.utilLinuxDirs ?? UTIL_LINUX_DIRS;
  const [prlimit, choom] = ['prlimit', 'choom'].map((tool) => dirs.map((d) => `${d}/${tool}`).find((p) => existsSync(p)));
  if (prlimit === undefined || choom === undefined) {
    return Promise.reject(new SpokeError('FailedPrecondition', `${prlimit === undefined ? 'prlimit' : 'choom'} not found (looked in ${dirs.join(', ')}; package util-linux): apparmor_parser runs only with its memory capped`, {}, { reason: 'APPARMOR_UNAVAILABLE' }));
  }
  return new Promise((resolve, reject) => {
    const child = spawn(prlimit, [`--as=${PARSER_ADDRESS_SPACE_BYTES}`, '--', choom, '-n', String(PARSER_OOM_SCORE_ADJ), '--', bin, ...args], { stdio: ['pipe', 'pipe', 'pipe'], shell: false, detached: true, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C', LC_ALL: 'C' } });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outBytes = 0;
    let errBytes = 0;
    child.stdout.on('data', (d: Buffer) => {
      if (outBytes < MAX_OUTPUT_BYTES) out.push(d);
      outBytes += d.length;
    });
    child.stderr.on('data', (d: Buffer) => {
      if (errBytes < MAX_OUTPUT_BYTES) err.push(d);
      errBytes += d.length;
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL'); // the group is gone already
      }
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new SpokeError('FailedPrecondition', `cannot run ${bin} (through ${prlimit}): ${e.message}`, {}, { cause: e, reason: 'APPARMOR_UNAVAILABLE' }));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (timedOut) {
        reject(new SpokeError('Internal', `${bin} did not finish within ${timeoutMs} ms`, {}, { reason: 'DEADLINE' }));
        return;
      }
      resolve({ code, signal, stdout: Buffer.concat(out).subarray(0, MAX_OUTPUT_BYTES), stdoutCut: outBytes > MAX_OUTPUT_BYTES, stderr: Buffer.concat(err).toString('utf8') });
    });
    // EPIPE if the parser exits before reading everything: the exit status tells the story.
    child.stdin.on('error', () => undefined);
    child.stdin.end(stdin, 'utf8');
  });
}

/** Lines of parser output that are noise on a machine without kernel AppArmor or a cache. */
const NOISE = [/^Cache read\/write disabled/, /^Warning: unable to find a suitable fs/, /^Use --subdomainfs to override/];

function lines(stderr: string): string[] {
  return stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !NOISE.some((re) => re.test(l)));
}

/** What the parser said about the text: its output but the noise and the warnings. */
function diagnostics(run: ParserRun): string[] {
  return lines(run.stderr).filter((l) => !l.startsWith('Warning'));
}

/** The distinct warnings the parser printed, at most MAX_WARNINGS of them, each at most 200 characters. */
function warningsOf(run: ParserRun): string[] {
  const unique = new Set<string>();
  for (const l of lines(run.stderr)) if (l.startsWith('Warning') && unique.size < MAX_WARNINGS) unique.add(l.slice(0, 200));
  return [...unique];
}

/** `what`, and how the parser failed, in its own words where it gave any. */
export function failure(what: string, run: ParserRun): string {
  const detail = diagnostics(run);
  const text = (detail.length > 0 ? detail : lines(run.stderr)).join('; ').slice(0, 500);
  return `${what}: apparmor_parser ${run.signal ? `killed by ${run.signal}` : `exit ${run.code}`}${text ? `: ${text}` : ''}`;
}

/** The flags of a compile that loads nothing and touches no cache (`-Q -K`), for the features `opts` name. */
export function checkArgs(opts: ParserOptions): string[] {
  const args = ['--skip-kernel-load', '--skip-cache', '--abort-on-error', WARN_NOT_ENFORCED];
  if (opts.featuresFile !== undefined) args.push('--features-file', opts.featuresFile);
  return args;
}

/**
 * Compiles `text` without loading it (`apparmor_parser -Q -K`). Resolves with the warnings;
 * rejects with SecurityProfileInvalid carrying the parser's error when it refuses the text.
 */
export async function checkWithParser(text: string, opts: ParserOptions = {}): Promise<CheckResult> {
  const run = await runParser(checkArgs(opts), text, opts);
  // A parser killed by a signal (the OOM killer in the shim's cgroup, say) judged nothing: a
  // transient failure, never a verdict on the text that would be remembered against it. The
  // parser compiles in a forked worker, and when the worker is killed the parent exits non-zero
  // having said nothing of the text; every rejection seen says why (docs/apparmor.md).
  // prlimit or choom that could not do its part (a limit or score the node refuses) ran no
  // parser: no verdict either, never a refusal remembered against the text.
  // A parser that could not run its compile (a file it reads, descriptors, memory of the node)
  // says so in words of its own, which say nothing of the text either.
  if (run.signal === null && run.code === 0) return { warnings: warningsOf(run) };
  if (run.signal === null && !wrapperFailed(run)) {
    const memory = memoryRefusal(run);
    if (memory !== undefined) throw memory;
    if (diagnostics(run).some((l) => TEXT_REJECTION.test(l))) throw new SpokeError('SecurityProfileInvalid', failure('AppArmor policy rejected', run), {}, { reason: 'PROFILE_INVALID' });
  }
  throw new SpokeError('Internal', failure('checking the AppArmor policy failed', run), {}, { reason: 'APPARMOR_FAILED' });
}

/**
 * The parser's words for a text it rejects (apparmor_parser 3.0's messages): a syntax or rule
 * error at a line, a policy that compiles to too large an automaton, a profile defined twice. Any
 * other failure (`Unable to open …`, `Failed to load features …`) is the node's state, never a
 * verdict on the text remembered against it.
 */
const TEXT_REJECTION = /^(?:AppArmor parser error|Too many (?:states|transitions)|Multiple definitions for |Profile \S{1,512} has too many )/;

/**
 * Whether prlimit or choom said it failed (`prlimit: …`, `choom: …`) before any parser ran:
 * every line said is theirs (a parser that ran says its own too).
 */
function wrapperFailed(run: ParserRun): boolean {
  const said = lines(run.stderr);
  return said.length > 0 && said.every((l) => l.startsWith('prlimit: ') || l.startsWith('choom: '));
}

/**
 * A parser that ran out of its address space (PARSER_ADDRESS_SPACE_BYTES) compiling the text: a
 * refusal of the text, which needs more than the cap (the same text needs as much every time),
 * LIMIT_EXCEEDED; a node whose memory is tighter than the cap fails a good text the same way,
 * so the shim remembers it only for a while (src/cri/apparmor.ts).
 */
function memoryRefusal(run: ParserRun): SpokeError | undefined {
  if (!run.stderr.includes('std::bad_alloc')) return undefined;
  return new SpokeError(
    'SecurityProfileInvalid',
    `AppArmor policy rejected: compiling it needs more than the ${PARSER_ADDRESS_SPACE_BYTES / 2 ** 20} MiB apparmor_parser may use (too many or too wide globs)`,
    { limit: PARSER_ADDRESS_SPACE_BYTES },
    { reason: 'LIMIT_EXCEEDED' },
  );
}

function requireKernel(opts: ParserOptions, what: string): void {
  if (!kernelHasAppArmor(opts.securityfs)) {
    throw new SpokeError('FailedPrecondition', `${what}: this node's kernel has no AppArmor (${opts.securityfs ?? DEFAULT_SECURITYFS} is missing)`, {}, { reason: 'APPARMOR_UNAVAILABLE' });
  }
}

/**
 * Loads (or replaces) the profiles in `text` into the kernel: `apparmor_parser --replace`.
 * Resolves with the parser's warnings: the rule classes this kernel does not enforce.
 */
export async function loadProfile(text: string, opts: ParserOptions = {}): Promise<CheckResult> {
  requireKernel(opts, 'cannot load an AppArmor profile');
  const run = await runParser(['--replace', '--skip-cache', '--abort-on-error', WARN_NOT_ENFORCED], text, opts);
  if (run.code !== 0) throw new SpokeError('Internal', failure('loading the AppArmor profile failed', run), {}, { reason: 'APPARMOR_FAILED' });
  return { warnings: warningsOf(run) };
}

/** The parser's line for a removal of a name the kernel does not hold (ENOENT): `<argv0>: Unable to remove "<name>".  Profile doesn't exist`. */
const REMOVED_NOTHING = /^.{1,4096}: Unable to remove "[^"]{1,4096}"\.\s+Profile doesn't exist$/;

/** Removes the profile `name` from the kernel: `apparmor_parser --remove` fed an empty profile of that name. */
export async function unloadProfile(name: string, opts: ParserOptions = {}): Promise<void> {
  checkProfileName(name);
  requireKernel(opts, 'cannot unload an AppArmor profile');
  const run = await runParser(['--remove'], `profile ${name} {\n}\n`, opts);
  if (run.code !== 0) {
    // apparmor_parser 3.0 says "Profile doesn't exist" for a name the kernel does not hold, on its
    // line of the removal: a warning beside it (a parser.conf that is missing is "not found") or
    // any other failure is no verdict on the name.
    if (diagnostics(run).some((l) => REMOVED_NOTHING.test(l))) throw new SpokeError('NotFound', `AppArmor profile ${name} is not loaded`, {}, { reason: 'NOT_FOUND' });
    throw new SpokeError('Internal', failure(`unloading AppArmor profile ${name} failed`, run), {}, { reason: 'APPARMOR_FAILED' });
  }
}
