// The seccomp library (src/profiles/seccomp) as the shim's SeccompOps: the wiring `spoke shim`
// uses, and the tests of the CRI layer with it.

import { auditIntersect, decodeSeccomp, formatConstraint, intersect, validateStrict, type SeccompProfile } from '../profiles/seccomp/index.js';
import type { SeccompOps } from './deps.js';

export const seccompOps: SeccompOps<SeccompProfile> = {
  decode: decodeSeccomp,
  validateBase: validateStrict,
  intersect: (b, base, a) => intersect(b, base, a),
  audit: (b, base, a) => auditIntersect(b, base, a),
  formatConstraint: (c) => formatConstraint(c as Parameters<typeof formatConstraint>[0]),
};
