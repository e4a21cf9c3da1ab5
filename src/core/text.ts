// Text that reaches people: what the CLI writes (docs/cli.md), and gRPC status messages, which
// the kubelet shows as pod events.

/** Control characters but newline and tab, DEL, C1 controls, and bidi overrides and isolates. */
const TERMINAL_UNSAFE_RE = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/g;

/**
 * Text for a terminal: human output carries what a registry chose (media types, a manifest that
 * is no profile, error text), which must not move the cursor, retitle the window or reorder a line.
 */
export function terminalSafe(text: string): string {
  return text.replace(TERMINAL_UNSAFE_RE, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16)}`;
  });
}
