// Which namespaces may sign with a key of the controller's --signing-keys directory
// (docs/recording.md, "Signing keys"). A key `NAME` signs only for the namespaces its scope
// file `NAME.namespaces`, beside it in the same Secret, lists; without that file it signs for
// none. Pure: the caller reads the file (src/cli/recording-controller.ts).

import { SpokeError } from '../core/errors.js';
import { isNamespaceName } from '../core/namespace.js';

/** The suffix of a key's scope file; a key's own name may not end with it. */
export const SCOPE_SUFFIX = '.namespaces';
/** A scope file larger than this is refused: it lists namespaces, not data. */
export const MAX_SCOPE_BYTES = 64 * 1024;

/** The namespaces a key may sign for: every one (`*`), or those listed. */
export type KeyScope = { readonly every: true } | { readonly every: false; readonly namespaces: ReadonlySet<string> };

/**
 * Parses a scope file: one namespace per line, or `*` alone for every namespace; blank lines and
 * lines starting with `#` are skipped, surrounding spaces ignored. Anything else is refused with
 * its file and line: a typo must not silently narrow (or widen) who may sign.
 */
export function parseKeyScope(text: string, file: string): KeyScope {
  const namespaces = new Set<string>();
  let every = false;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const entry = lines[i]!.trim();
    if (entry === '' || entry.startsWith('#')) continue;
    if (entry === '*') every = true;
    else if (isNamespaceName(entry)) namespaces.add(entry);
    else {
      throw new SpokeError('InvalidArgument', `${file}:${i + 1}: ${JSON.stringify(entry.slice(0, 80))} is not a namespace name (an RFC 1123 label) or *`, { file, line: i + 1 }, { reason: 'OPTION_INVALID' });
    }
  }
  if (every && namespaces.size > 0) {
    throw new SpokeError('InvalidArgument', `${file}: * and named namespaces together; keep one`, { file }, { reason: 'OPTION_INVALID' });
  }
  return every ? { every: true } : { every: false, namespaces };
}

/** Whether a key whose scope is `scope` (undefined: no scope file) may sign for `namespace`. */
export function scopeAllows(scope: KeyScope | undefined, namespace: string): boolean {
  if (scope === undefined) return false;
  return scope.every || scope.namespaces.has(namespace);
}
