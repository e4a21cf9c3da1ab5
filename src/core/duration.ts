// Durations as people write them in config files and flags: an integer and a unit,
// `1500ms`, `90s`, `10m`, `1h`, `2d`. Pure.

const DURATION_RE = /^([0-9]{1,9})(ms|s|m|h|d)$/;
const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `30s` → 30000; undefined for anything that is not an integer with one of the units. */
export function parseDuration(text: string): number | undefined {
  const m = DURATION_RE.exec(text);
  return m ? Number(m[1]) * UNIT_MS[m[2]!]! : undefined;
}
