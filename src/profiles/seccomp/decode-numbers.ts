// Number literals read exactly for the seccomp decoder (decode.ts): argument values are uint64,
// beyond the precision of a JS number, so in the exact reading every literal is carried through
// JSON.parse as a tagged string and kept as written (no JSON library here keeps uint64 exact and
// refuses duplicate members as well). The plain reading keeps JS numbers while every literal is
// an integer a JS number holds exactly.

import { parseStrictJson } from '../../core/json.js';
import { SpokeError } from '../../core/errors.js';

const STRING_TAG = 's';
const NUMBER_TAG = 'n';
const JSON_NUMBER_RE = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$/;
/** A fraction or exponent: a literal that JSON.parse may turn into an integer it does not spell. */
const FRACTION_OR_EXPONENT_RE = /[0-9][.eE]/;
/** An integer of 16+ digits, which a JS number may not hold exactly. */
const LONG_INTEGER_RE = /[0-9]{16}/;
export const UINT_RE = /^(?:0|[1-9][0-9]{0,19})$/;

/** A number literal kept as written, for values beyond a JS number's exact range. */
export class ExactNumber {
  constructor(readonly literal: string) {}
}

/**
 * Thrown, and caught in decodeSeccomp, when a value is read from a JS number JSON.parse may have
 * rounded (16+ digits): the document is then read again with every literal exact.
 */
export class RoundedNumber {}

function isNumberChar(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2b || c === 0x2e || c === 0x45 || c === 0x65;
}

function isJsonSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/**
 * Rewrites number literals to `"n<literal>"` and string values to `"s<string>"` (member names
 * stay as they are) so that JSON.parse keeps every number's exact text and a string can never
 * pass for a number. Returns undefined if the text is not well-formed enough to rewrite; the
 * caller then lets the plain strict parser produce the precise error.
 */
function tagScalars(text: string): string | undefined {
  const out: string[] = [];
  let copied = 0;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      let end = i + 1;
      for (;;) {
        end = text.indexOf('"', end);
        if (end < 0) return undefined;
        let backslashes = 0;
        while (text.charCodeAt(end - 1 - backslashes) === 0x5c) backslashes++;
        if (backslashes % 2 === 0) break;
        end++;
      }
      let next = end + 1;
      while (next < n && isJsonSpace(text.charCodeAt(next))) next++;
      if (text.charCodeAt(next) !== 0x3a /* : */) {
        out.push(text.slice(copied, i + 1), STRING_TAG);
        copied = i + 1;
      }
      i = end + 1;
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      let end = i + 1;
      while (end < n && isNumberChar(text.charCodeAt(end))) end++;
      const literal = text.slice(i, end);
      if (literal.length > 400 || !JSON_NUMBER_RE.test(literal)) return undefined;
      out.push(text.slice(copied, i), `"${NUMBER_TAG}${literal}"`);
      copied = end;
      i = end;
    } else {
      i++;
    }
  }
  out.push(text.slice(copied));
  return out.join('');
}

/**
 * Turns tagged strings back into strings and ExactNumbers. Members are defined as own
 * properties, as JSON.parse makes them: assigned, a "__proto__" member would go through the
 * prototype setter and become the object's prototype (its members inherited, unseen as
 * unknown) instead of the unknown member the decoders refuse.
 */
function untag(v: unknown): unknown {
  if (typeof v === 'string') return v.startsWith(NUMBER_TAG) ? new ExactNumber(v.slice(1)) : v.slice(1);
  if (Array.isArray(v)) return v.map(untag);
  if (typeof v === 'object' && v !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, value] of Object.entries(v)) Object.defineProperty(out, k, { value: untag(value), enumerable: true, writable: true, configurable: true });
    return out;
  }
  return v;
}

/** Strict JSON with every number literal an ExactNumber; `what` names the document in errors. */
export function parseExact(text: string, what: string): unknown {
  const tagged = tagScalars(text);
  if (tagged !== undefined) {
    try {
      return untag(parseStrictJson(tagged, what));
    } catch (e) {
      // Duplicate members carry the right path already; syntax errors are re-reported below
      // against the original text so positions in the message are the user's.
      if (e instanceof SpokeError && e.context.path !== undefined) throw e;
    }
  }
  parseStrictJson(text, what);
  throw new SpokeError('SecurityProfileInvalid', `${what}: not valid JSON`, {}, { reason: 'JSON_INVALID' });
}

/**
 * Whether the text must be read exactly from the start: a fraction or exponent anywhere, or a
 * literal "-0" (refused by the exact reading, read as 0 by the plain one) next to a long integer,
 * which has always meant the exact reading.
 */
export function needsExactReading(text: string): boolean {
  return FRACTION_OR_EXPONENT_RE.test(text) || (text.includes('-0') && LONG_INTEGER_RE.test(text));
}
