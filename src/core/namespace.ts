// Kubernetes names as the API server admits them: namespace names (RFC 1123 labels, at most 63
// characters; a name any other way did not come from a pod, and is never kept as a key) and DNS
// subdomains (RFC 1123, at most 253 characters: most object names, label key prefixes).

const NAMESPACE_RE = /^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$/;
const SUBDOMAIN_RE = /^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*$/;

export function isNamespaceName(s: string): boolean {
  return s.length <= 63 && NAMESPACE_RE.test(s);
}

export function isDnsSubdomain(s: string): boolean {
  return s.length <= 253 && SUBDOMAIN_RE.test(s);
}
