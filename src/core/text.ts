// Text that reaches people: what the CLI writes (docs/cli.md), and gRPC status messages, which
// the kubelet shows as pod events.

/**
 * Control characters but newline and tab, DEL, C1 controls, bidi marks, overrides and isolates,
 * and the Unicode line and paragraph separators.
 */
const TERMINAL_UNSAFE_RE = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
/** What JSON.stringify leaves as it is of the above (it escapes the rest). */
const JSON_UNSAFE_RE = /[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * Text for a terminal: human output carries what a registry chose (media types, a manifest that
 * is no profile, error text), which must not move the cursor, retitle the window or reorder a line.
 */
export function terminalSafe(text: string): string {
  return text.replace(TERMINAL_UNSAFE_RE, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/**
 * JSON for a terminal (--json): the same value, with the characters terminalSafe escapes that
 * JSON.stringify leaves raw written as \u escapes (they can only stand inside strings).
 */
export function terminalSafeJson(value: unknown, indent?: number): string {
  return JSON.stringify(value, null, indent).replace(JSON_UNSAFE_RE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * One line of human text on `stream` (a warning, a note), through terminalSafe, and with any line
 * break in it made a space: a newline in a quoted value would forge a line of its own.
 */
export function writeSafeLine(stream: NodeJS.WritableStream, text: string): void {
  stream.write(`${terminalSafe(text.replace(/[\r\n]+/g, ' '))}\n`);
}
