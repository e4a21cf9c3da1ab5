// Timing helpers for benchmarks: run a case N times, report p50/p99 in milliseconds.

export interface Stats {
  n: number;
  p50: number;
  p99: number;
  mean: number;
  min: number;
  max: number;
}

export function summarize(samplesMs: number[]): Stats {
  const s = [...samplesMs].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
  return { n: s.length, p50: at(0.5), p99: at(0.99), mean: s.reduce((a, b) => a + b, 0) / s.length, min: s[0]!, max: s[s.length - 1]! };
}

/** Runs `fn` `warmup` times untimed, then `n` times timed, sequentially. */
export async function measure(n: number, fn: (i: number) => Promise<unknown> | unknown, warmup = 3): Promise<Stats> {
  for (let i = 0; i < warmup; i++) await fn(-1 - i);
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await fn(i);
    samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return summarize(samples);
}

export const fmt = (ms: number) => (ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : ms < 100 ? `${ms.toFixed(2)} ms` : `${ms.toFixed(0)} ms`);

/**
 * Runs every case of `fns` once per round, `n` rounds (after `warmup` untimed rounds), so the
 * figure and its floor see the same machine state; the case order rotates each round. Returns
 * each case's samples in round order.
 */
export async function sampleInterleaved<K extends string>(n: number, fns: Record<K, (i: number) => Promise<unknown> | unknown>, warmup = 3): Promise<Record<K, number[]>> {
  const keys = Object.keys(fns) as K[];
  const samples = Object.fromEntries(keys.map((k) => [k, [] as number[]])) as Record<K, number[]>;
  for (let i = -warmup; i < n; i++) {
    for (let j = 0; j < keys.length; j++) {
      const k = keys[(j + (i < 0 ? 0 : i)) % keys.length]!;
      const t0 = process.hrtime.bigint();
      await fns[k](i);
      if (i >= 0) samples[k].push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  }
  return samples;
}

/** sampleInterleaved, summarised per case. */
export async function measureInterleaved<K extends string>(n: number, fns: Record<K, (i: number) => Promise<unknown> | unknown>, warmup = 3): Promise<Record<K, Stats>> {
  const samples = await sampleInterleaved(n, fns, warmup);
  return Object.fromEntries(Object.entries<number[]>(samples).map(([k, v]) => [k, summarize(v)])) as Record<K, Stats>;
}

/**
 * What `samples` add over `base`, round by round (both from one sampleInterleaved): the p99 of
 * these differences is the tail a call adds. A difference of the two p99s is not: each p99 is a
 * few samples, and a slow base round can make it negative.
 */
export function addedPerRound(samples: readonly number[], base: readonly number[]): Stats {
  return summarize(samples.map((v, i) => v - base[i]!));
}

/** One target of a bench row: does spoke meet it, and does the floor measured in the same run. */
export interface TargetCheck {
  spoke: boolean;
  /** The floor beside it (the least any implementation of that step does here), with its figure. */
  floor?: { meets: boolean; figure: string };
}

/**
 * A row's verdict: met when spoke meets every target. Otherwise the target sits below the floor
 * when every target spoke misses is missed by its floor too, in the same run: `belowFloor` names
 * those floors' figures. A miss without a floor beside it, or one its floor meets, is spoke's own.
 */
export function verdict(checks: readonly TargetCheck[]): { met: boolean; belowFloor?: string } {
  const missed = checks.filter((c) => !c.spoke);
  if (missed.length === 0) return { met: true };
  if (missed.some((c) => c.floor === undefined || c.floor.meets)) return { met: false };
  return { met: false, belowFloor: missed.map((c) => c.floor!.figure).join('; ') };
}
