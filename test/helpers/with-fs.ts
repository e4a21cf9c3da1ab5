// A node:fs function replaced for the length of a test step, where ES module imports of node:fs
// (the code under test) see the replacement too.

import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';

type FsFunctionName = { [K in keyof typeof fs]: (typeof fs)[K] extends (...args: never[]) => unknown ? K : never }[keyof typeof fs];
type Untyped = (...args: unknown[]) => unknown;

/**
 * Runs `body` with `fs[name]` replaced by what `replace` makes of the original, and puts the
 * original back when `body` returns, throws or (a promise) settles.
 */
export function withFs<R>(name: FsFunctionName, replace: (original: Untyped) => Untyped, body: () => R): R {
  const target = fs as unknown as Record<string, Untyped>;
  const original = target[name]!;
  target[name] = replace(original);
  syncBuiltinESMExports();
  const restore = () => {
    target[name] = original;
    syncBuiltinESMExports();
  };
  let result: R;
  try {
    result = body();
  } catch (e) {
    restore();
    throw e;
  }
  if (result instanceof Promise) return result.finally(restore) as R;
  restore();
  return result;
}
