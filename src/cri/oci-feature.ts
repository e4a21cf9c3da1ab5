// The Status response edit: the runtime's features gain security_profile_oci_artifact.

import { FEATURE_OCI_ARTIFACT, OCI_FEATURE_TRUE, STATUS_FEATURES } from './messages.js';
import { FieldCursor, findAll, WIRE_VARINT } from './wire.js';
import { appendToMessageAt } from './wire-write.js';

/** StatusResponse: features.security_profile_oci_artifact = true, every other byte kept. */
export function addOciFeature(payload: Buffer): Buffer {
  const feats = findAll(payload, STATUS_FEATURES);
  if (feats.length > 0) {
    const last = feats[feats.length - 1]!;
    let already = false;
    for (const f = new FieldCursor(payload, last.valueStart, last.end); f.next(); ) {
      if (f.field === FEATURE_OCI_ARTIFACT && f.wireType === WIRE_VARINT) already = f.varint !== 0;
    }
    if (already) return payload;
  }
  return appendToMessageAt(payload, [STATUS_FEATURES], OCI_FEATURE_TRUE);
}
