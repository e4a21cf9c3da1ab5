// `WWW-Authenticate` parsing (RFC 9110 §11.6.1 challenges; Docker token auth uses Bearer with
// realm/service/scope). Headers come from registries we do not trust, so the scanner is one
// linear pass with hard limits on length and counts, and never builds objects keyed by
// attacker-chosen names (params live in a Map).

/** Longest header value we look at; longer ones are ignored as a whole. */
export const MAX_CHALLENGE_HEADER_LENGTH = 8192;
const MAX_CHALLENGES = 8;
const MAX_PARAMS = 16;

export interface Challenge {
  /** Lowercased auth scheme, e.g. `basic` or `bearer`. */
  readonly scheme: string;
  /** Lowercased parameter names → unquoted values. */
  readonly params: ReadonlyMap<string, string>;
}

// RFC 9110 tchar.
function isTchar(c: number): boolean {
  return (
    (c >= 0x30 && c <= 0x39) || // 0-9
    (c >= 0x41 && c <= 0x5a) || // A-Z
    (c >= 0x61 && c <= 0x7a) || // a-z
    '!#$%&\'*+-.^_`|~'.includes(String.fromCharCode(c))
  );
}

class Scanner {
  pos = 0;
  constructor(readonly s: string) {}
  skipSpace(): void {
    while (this.pos < this.s.length && (this.s[this.pos] === ' ' || this.s[this.pos] === '\t')) this.pos++;
  }
  /** Skips whitespace and commas (empty list elements are allowed). */
  skipSeparators(): void {
    while (this.pos < this.s.length && ' \t,'.includes(this.s[this.pos]!)) this.pos++;
  }
  token(): string {
    const start = this.pos;
    while (this.pos < this.s.length && isTchar(this.s.charCodeAt(this.pos))) this.pos++;
    return this.s.slice(start, this.pos);
  }
  /** A quoted-string starting at the opening quote; undefined when unterminated. */
  quoted(): string | undefined {
    let out = '';
    this.pos++; // opening quote
    while (this.pos < this.s.length) {
      const ch = this.s[this.pos++]!;
      if (ch === '"') return out;
      if (ch === '\\' && this.pos < this.s.length) out += this.s[this.pos++];
      else out += ch;
    }
    return undefined;
  }
  /** Skips token68 padding or any junk up to the next comma. */
  skipToComma(): void {
    while (this.pos < this.s.length && this.s[this.pos] !== ',') this.pos++;
  }
  peek(): string | undefined {
    return this.s[this.pos];
  }
  done(): boolean {
    return this.pos >= this.s.length;
  }
}

/**
 * Parses one or more `WWW-Authenticate` values into challenges. Malformed parts end the parse
 * (what was read before them is kept); oversized input yields no challenges at all.
 */
export function parseChallenges(header: string | readonly string[] | undefined): Challenge[] {
  if (header === undefined) return [];
  const values = typeof header === 'string' ? [header] : header;
  let total = 0;
  for (const v of values) total += v.length;
  if (total > MAX_CHALLENGE_HEADER_LENGTH) return [];
  const out: Challenge[] = [];
  for (const v of values) {
    parseInto(v, out);
    if (out.length >= MAX_CHALLENGES) break;
  }
  return out.slice(0, MAX_CHALLENGES);
}

function parseInto(value: string, out: Challenge[]): void {
  const sc = new Scanner(value);
  let current: { scheme: string; params: Map<string, string> } | undefined;
  while (out.length < MAX_CHALLENGES) {
    sc.skipSeparators();
    if (sc.done()) return;
    const name = sc.token();
    if (name === '') return; // not a token: stop rather than guess
    sc.skipSpace();
    if (sc.peek() === '=' && current !== undefined) {
      // auth-param of the current challenge
      sc.pos++;
      sc.skipSpace();
      let val: string | undefined;
      if (sc.peek() === '"') val = sc.quoted();
      else val = sc.token();
      if (val === undefined) return;
      const key = name.toLowerCase();
      if (current.params.size < MAX_PARAMS && !current.params.has(key)) current.params.set(key, val);
      sc.skipSpace();
      if (!sc.done() && sc.peek() !== ',') return;
      continue;
    }
    // a new challenge: scheme, then optionally a token68 or the first param
    current = { scheme: name.toLowerCase(), params: new Map() };
    out.push(current);
    const save = sc.pos;
    const next = sc.token();
    sc.skipSpace();
    if (next !== '' && sc.peek() === '=' && !endsToken68(sc)) {
      sc.pos = save; // first auth-param: re-read it in the loop
      continue;
    }
    if (next !== '') sc.skipToComma(); // token68 (e.g. `Negotiate abc==`): ignored
  }
}

/** At an "=": true when it is token68 padding (`==`, or `=` then a comma or the end), not `name=value`. */
function endsToken68(sc: Scanner): boolean {
  let p = sc.pos + 1;
  if (sc.s[p] === '=') return true;
  while (p < sc.s.length && (sc.s[p] === ' ' || sc.s[p] === '\t')) p++;
  return p >= sc.s.length || sc.s[p] === ',';
}

/** The first challenge with `scheme` (lowercase), if any. */
export function findChallenge(challenges: readonly Challenge[], scheme: string): Challenge | undefined {
  return challenges.find((c) => c.scheme === scheme);
}
