// Hand-written: no library matches AppArmor's glob dialect, and the merge must agree with
// apparmor_parser byte for byte.
// AppArmor file-rule patterns, matched as apparmor_parser matches them (parser_regex.c
// convert_aaregex_to_pcre, then the byte-oriented DFA of libapparmor_re):
//   *    any bytes except "/"          **   any bytes, "/" included
//   ?    one byte except "/"           [..] one byte of a class ("^" negates; a negated class
//                                           also matches "/")
//   {a,b,...}  alternation, nestable, alternatives may be empty and hold further tokens
// A star run fills a whole path component when the last character emitted before it is "/"
// and the raw pattern character after it is "/" or the end: then it must match at least one
// byte, so "/dir/*" and "/dir/**" do not match "/dir/" itself while "/etc/*.conf" matches
// "/etc/.conf". Matching is over UTF-8 bytes: "?" matches one byte, not one character.
//
// Only the subset the artifact validator admits is modelled (no escapes, no "," outside an
// alternation, no runs of three stars, strict classes); anything else is a GlobError, which the
// validator reports and the merge treats as a pattern matching nothing. Matching runs a
// Thompson NFA (no backtracking), linear in pattern × name.

import { buildNfa, onlyMember, type ByteSet, type MatchBudget, type Node } from './glob-nfa.js';

/** apparmor_parser: a "{" nesting that reaches 50 is rejected (MAX_ALT_DEPTH). */
export const MAX_ALTERNATION_DEPTH = 49;
/** KEP-6061 §4: a pattern with more than 100 alternatives in total never matches; we refuse it. */
export const MAX_ALTERNATIVES = 100;

// A pattern the grammar refuses. Not a SpokeError on purpose: it carries no path, so the one
// place that reports it (validate.ts) turns it into SecurityProfileInvalid at the pattern's path.
export class GlobError extends Error {}

export interface CompiledGlob {
  /** The pattern as written. */
  readonly pattern: string;
  /** True when the pattern has a glob token at all. */
  readonly isGlob: boolean;
  /** UTF-8 bytes (as a latin1 string) before the first glob token; the whole name for a literal. */
  readonly literalPrefix: string;
  /** `<prefix>/**` with no other glob token: everything strictly below `<prefix>/`. */
  readonly starStarOnly: boolean;
  /** Total alternatives across all alternations. */
  readonly alternatives: number;
  /**
   * Whether the pattern matches the name (a UTF-8 string, or bytes as a latin1 string with
   * `bytes`). With a budget, throws GlobBudgetError once the shared budget is spent.
   */
  matches(name: string, bytes?: boolean, budget?: MatchBudget): boolean;
  /** Whether the pattern matches some name that starts with `prefix` (bytes as a latin1 string). */
  matchesSomeNameStartingWith(prefix: string, budget?: MatchBudget): boolean;
  /**
   * Whether the bytes the pattern itself writes (literals, one-member classes, through any choice
   * of alternatives) spell an empty, "." or ".." path component. What a star, "?" or a wider
   * class matches is left out: "*" may match "..", and no name the kernel checks has one.
   */
  readonly spellsOddComponent: boolean;
}

const NOT_NUL_OR_SLASH: ByteSet = (() => {
  const s = new Uint8Array(256).fill(1);
  s[0] = 0;
  s[0x2f] = 0;
  return s;
})();
const NOT_NUL: ByteSet = (() => {
  const s = new Uint8Array(256).fill(1);
  s[0] = 0;
  return s;
})();

/** The one-byte sets, shared by every compiled pattern (never written after this): a set per literal byte of a 256 KiB artifact would be 64 MiB. */
const SINGLE: readonly ByteSet[] = Array.from({ length: 256 }, (_, b) => {
  const s = new Uint8Array(256);
  s[b] = 1;
  return s;
});

/** Characters that may not appear inside a class: they would be glob tokens or rule syntax there. */
const CLASS_FORBIDDEN = new Set(['*', '?', '[', '{', '}', ',', '/', '\\', '"', '!', '#', '@', ' ']);

/** UTF-8 bytes of `s` as a string of char codes 0–255. */
export function toBytes(s: string): string {
  return Buffer.from(s, 'utf8').toString('latin1');
}

class Parser {
  private i = 0;
  private depth = 0;
  private last = ''; // the last character apparmor_parser would have emitted into its regex
  alternatives = 0;
  firstGlob = -1;
  globTokens = 0;
  trailingStarStar = false;

  constructor(private readonly s: string) {}

  private mark(): void {
    this.globTokens++;
    if (this.firstGlob < 0) this.firstGlob = this.i;
  }

  /** Parses a sequence until the end, or (inside an alternation) an unconsumed "," or "}". */
  seq(): Node[] {
    const s = this.s;
    const out: Node[] = [];
    while (this.i < s.length) {
      const c = s[this.i]!;
      if (c === '*') {
        let run = 1;
        while (s[this.i + run] === '*') run++;
        if (run > 2) throw new GlobError(`a run of ${run} stars; write "**"`);
        this.mark();
        const after = this.i + run;
        const fillsComponent = this.last === '/' && (after === s.length || s[after] === '/');
        if (fillsComponent) out.push({ t: 'byte', set: NOT_NUL_OR_SLASH, only: -1 });
        out.push({ t: 'star', set: run === 2 ? NOT_NUL : NOT_NUL_OR_SLASH });
        if (run === 2 && fillsComponent && after === s.length) this.trailingStarStar = true;
        this.last = '*';
        this.i = after;
      } else if (c === '?') {
        this.mark();
        out.push({ t: 'byte', set: NOT_NUL_OR_SLASH, only: -1 });
        this.last = '?';
        this.i++;
      } else if (c === '[') {
        this.mark();
        const set = this.cls();
        out.push({ t: 'byte', set, only: onlyMember(set) });
        this.last = ']';
      } else if (c === ']') {
        throw new GlobError('"]" without "["');
      } else if (c === '{') {
        this.mark();
        out.push(this.alt());
      } else if (c === '}' || c === ',') {
        if (this.depth === 0) throw new GlobError(c === '}' ? '"}" without "{"' : '"," outside an alternation');
        return out;
      } else {
        const code = c.charCodeAt(0);
        if (code === 0) throw new GlobError('NUL byte');
        out.push({ t: 'byte', set: SINGLE[code]!, only: code });
        this.last = c;
        this.i++;
      }
    }
    return out;
  }

  private alt(): Node {
    const s = this.s;
    this.depth++;
    if (this.depth > MAX_ALTERNATION_DEPTH) throw new GlobError(`alternations nested deeper than ${MAX_ALTERNATION_DEPTH}`);
    this.i++; // "{"
    this.last = '(';
    const alts: Node[][] = [];
    for (;;) {
      alts.push(this.seq());
      if (this.i >= s.length) throw new GlobError('"{" without "}"');
      const c = s[this.i];
      this.i++;
      if (c === ',') {
        this.last = '|';
        continue;
      }
      break; // "}"
    }
    if (alts.length < 2) throw new GlobError('an alternation needs at least one ","');
    this.alternatives += alts.length;
    this.depth--;
    this.last = ')';
    return { t: 'alt', alts };
  }

  private cls(): ByteSet {
    const s = this.s;
    this.i++; // "["
    let negate = false;
    if (s[this.i] === '^') {
      negate = true;
      this.i++;
    }
    const members = new Uint8Array(256);
    let count = 0;
    while (this.i < s.length && s[this.i] !== ']') {
      const lo = s[this.i]!;
      const loCode = lo.charCodeAt(0);
      if (loCode < 0x21 || loCode > 0x7e || CLASS_FORBIDDEN.has(lo)) throw new GlobError(`${JSON.stringify(lo)} inside a class`);
      if (lo === '-') throw new GlobError('"-" outside a class range');
      if (lo === '^') throw new GlobError('"^" inside a class other than as its first character');
      let hiCode = loCode;
      if (s[this.i + 1] === '-') {
        const hi = s[this.i + 2];
        if (hi === undefined || hi === ']') throw new GlobError('a class range without an end');
        hiCode = hi.charCodeAt(0);
        if (hiCode < 0x21 || hiCode > 0x7e || CLASS_FORBIDDEN.has(hi) || hi === '-') throw new GlobError(`${JSON.stringify(hi)} inside a class`);
        if (hiCode < loCode) throw new GlobError(`reversed class range ${lo}-${hi}`);
        if (loCode <= 0x2f && hiCode >= 0x2f) throw new GlobError('a class range spanning "/"');
        this.i += 3;
      } else {
        this.i += 1;
      }
      for (let b = loCode; b <= hiCode; b++) members[b] = 1;
      count++;
    }
    if (this.i >= s.length) throw new GlobError('"[" without "]"');
    if (count === 0) throw new GlobError('an empty class');
    this.i++; // "]"
    if (!negate) return members;
    const set = new Uint8Array(256);
    for (let b = 1; b < 256; b++) set[b] = members[b] ? 0 : 1;
    return set;
  }
}

/** Compiles an AppArmor path pattern; throws GlobError for what apparmor_parser (or we) refuse. */
export function compileGlob(pattern: string): CompiledGlob {
  const bytes = toBytes(pattern);
  const p = new Parser(bytes);
  const nodes = p.seq();
  if (p.alternatives > MAX_ALTERNATIVES) throw new GlobError(`${p.alternatives} alternatives, over the limit of ${MAX_ALTERNATIVES}`);
  const nfa = buildNfa(nodes);
  const isGlob = p.firstGlob >= 0;
  const literalPrefix = isGlob ? bytes.slice(0, p.firstGlob) : bytes;
  return {
    pattern,
    isGlob,
    literalPrefix,
    starStarOnly: p.trailingStarStar && p.globTokens === 1,
    alternatives: p.alternatives,
    matches(name: string, asBytes = false, budget?: MatchBudget): boolean {
      const b = asBytes ? name : toBytes(name);
      if (!b.startsWith(literalPrefix)) return false;
      if (!isGlob) return b === literalPrefix;
      return nfa.run(b, budget);
    },
    matchesSomeNameStartingWith(prefix: string, budget?: MatchBudget): boolean {
      return nfa.startsSomeMatch(prefix, budget);
    },
    get spellsOddComponent(): boolean {
      return nfa.spellsOddComponent();
    },
  };
}

/** Compiles, or returns undefined for a pattern that never matches. */
export function tryCompileGlob(pattern: string): CompiledGlob | undefined {
  try {
    return compileGlob(pattern);
  } catch (e) {
    if (e instanceof GlobError) return undefined;
    throw e;
  }
}

/**
 * Whether every name `narrow` matches is also matched by `wide`, where `wide` is a `<prefix>/**`
 * pattern (KEP-6061 §4: "one narrows the other's prefix/**"). `<prefix>/**` matches exactly the
 * names that start with `<prefix>/` followed by a byte other than "/", so it suffices that
 * `narrow`'s literal prefix starts with `<prefix>/`, that `narrow` cannot match `<prefix>/`
 * itself, and that no name it matches starts with `<prefix>//` (a negated class or an empty
 * alternative may write that "/").
 */
export function narrowsStarStar(wide: CompiledGlob, narrow: CompiledGlob, budget?: MatchBudget): boolean {
  if (!wide.starStarOnly) return false;
  const prefix = wide.literalPrefix;
  if (!narrow.literalPrefix.startsWith(prefix)) return false;
  return !narrow.matches(prefix, true, budget) && !narrow.matchesSomeNameStartingWith(`${prefix}/`, budget);
}
