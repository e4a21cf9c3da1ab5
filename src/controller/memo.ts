// Validation of Kubernetes objects the webhook sees at every review of a namespace's pods: the
// reflector keeps an object until it changes (a change comes as a new object), so each object is
// validated once while its spec and metadata are the objects they were.

/** `validate`, remembered per object (and per its spec and metadata objects). */
export function memoByObject<T>(validate: (obj: unknown) => T): (obj: unknown) => T {
  const seen = new WeakMap<object, { spec: unknown; metadata: unknown; result: T }>();
  return (obj) => {
    if (obj === null || typeof obj !== 'object') return validate(obj);
    const { spec, metadata } = obj as { spec?: unknown; metadata?: unknown };
    const hit = seen.get(obj);
    if (hit !== undefined && hit.spec === spec && hit.metadata === metadata) return hit.result;
    const result = validate(obj);
    seen.set(obj, { spec, metadata, result });
    return result;
  };
}
