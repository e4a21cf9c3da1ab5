// Security profiles by kind (DESIGN §2: pure, imports only core).

import type { ProfileKind } from '../core/constants.js';
import { SpokeError } from '../core/errors.js';
import { decodeStrictJson } from '../core/json.js';
import { decodeSeccomp, validateArtifact } from './seccomp/index.js';

/**
 * Pull-time check of an artifact's layer (DESIGN §3 step 8): strict decode plus the kind's
 * artifact rules. AppArmor gets its rules in a later issue; until then a strict JSON object.
 */
export function validateArtifactBytes(kind: ProfileKind, bytes: Uint8Array): void {
  switch (kind) {
    case 'seccomp':
      validateArtifact(decodeSeccomp(bytes));
      return;
    case 'apparmor': {
      const value = decodeStrictJson(bytes, 'apparmor profile');
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        throw new SpokeError('SecurityProfileInvalid', 'apparmor profile: must be a JSON object', { path: '(document)' });
      }
      return;
    }
  }
}
