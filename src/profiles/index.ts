// Security profiles by kind (docs/architecture.md: pure, imports only core).

import type { ProfileKind } from '../core/constants.js';
import { validateAppArmorArtifactBytes } from './apparmor/index.js';
import { decodeSeccomp, validateArtifact } from './seccomp/index.js';

/** Pull-time check of an artifact's layer (docs/architecture.md, pull step 8): strict decode plus the kind's artifact rules. */
export function validateArtifactBytes(kind: ProfileKind, bytes: Uint8Array): void {
  switch (kind) {
    case 'seccomp':
      validateArtifact(decodeSeccomp(bytes));
      return;
    case 'apparmor':
      validateAppArmorArtifactBytes(bytes);
      return;
  }
}
