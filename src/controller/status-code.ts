/** The HTTP status of an API error, as client-node's errors (`code`) and others (`statusCode`) carry it. */
export function codeOf(e: unknown): number | undefined {
  const o = e as { code?: unknown; statusCode?: unknown } | undefined;
  if (typeof o?.code === 'number') return o.code;
  if (typeof o?.statusCode === 'number') return o.statusCode;
  return undefined;
}
