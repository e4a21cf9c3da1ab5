// Kubernetes namespace names (RFC 1123 labels, at most 63 characters), as the API server admits
// them: a name any other way did not come from a pod, and is never kept as a key.

const NAMESPACE_RE = /^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$/;

export function isNamespaceName(s: string): boolean {
  return s.length <= 63 && NAMESPACE_RE.test(s);
}
