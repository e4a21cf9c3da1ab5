// CRI cases (shim in front of real containerd); filled in once the shim lands.
import type { BenchContext } from './bench.js';

export async function shimCases(_ctx: BenchContext, _opts: { n: number; quick: boolean }): Promise<void> {}
