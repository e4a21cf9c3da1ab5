// The in-use rebuild's plan: from what the runtime really runs (scan), not from the old set alone.
//   - holders of live ids are kept, of ids the runtime no longer knows dropped;
//   - each live object's runtime config (verbose ContainerStatus / PodSandboxStatus, read once
//     per object: it never changes) is read; a seccomp Localhost profile (or a runtime spec
//     annotation) at <seccompRoot>/spoke/<sha>.json gives the object a holder for the artifact
//     that file was merged from (the store's effective map), and an AppArmor profile
//     `spoke-<sha>` likewise;
//   - pending holders are resolved as described in inuse-holders.ts.
// The caller replaces every runtime holder with the plan and marks the set complete
// (store.replaceInUse); see inuse.ts.

import type { Digest } from '../core/digest.js';
import { appArmorHolder, parseAppArmorHolder, parsePending, PENDING_GRACE_MS, PENDING_PREFIX } from './inuse-holders.js';
import { spokeAppArmorSha, spokeEffectiveSha } from './runtime-config.js';
import type { Scan } from './runtime-scan.js';

export interface RebuildContext {
  /** Pending holders (inner `pending:…`) whose create is in flight in this process. */
  inflight: ReadonlySet<string>;
  now: number;
  /** `<seccompRoot>/spoke`, where effective files live. */
  spokeDir: string;
  /** The artifact an effective file or AppArmor profile was merged from. */
  originOf: (sha: string) => Promise<Digest | undefined>;
}

export interface RebuildPlan {
  /** Every runtime holder after the rebuild. */
  keep: Map<string, Digest>;
  dropped: number;
  /** AppArmor profiles whose holders were dropped (unload candidates). */
  droppedAppArmor: string[];
  /** Holders added from runtime configs. */
  found: number;
  /** When a kept pending holder comes of age (ms from now), if any. */
  recheck: number | undefined;
  /** Effective-file shas live objects' configs name. */
  effective: Set<string>;
}

/**
 * Whether a pending holder stamped `age` ms ago (wall clock: the stamp is in in-use.json, read by
 * a later process too) may still be a create in its grace period. A stamp ahead of the clock by
 * less than the grace is kept (a small step back); further ahead, no create of the last grace
 * period made it, and keeping it would hold its profile, with rechecks, until the clock caught up.
 */
function pendingWithinGrace(age: number): boolean {
  return age < PENDING_GRACE_MS && age > -PENDING_GRACE_MS;
}

/** Which holders of `current` (digest → holders) stay, go or are added, given what the runtime runs. */
export async function planRebuild(current: ReadonlyMap<Digest, readonly string[]>, scan: Scan, ctx: RebuildContext): Promise<RebuildPlan> {
  const keep = new Map<string, Digest>();
  const droppedAppArmor: string[] = [];
  let dropped = 0;
  let recheck: number | undefined;
  /** Pending holders whose create the runtime made: the object's holder → [pending holder, digest]. */
  const takeovers = new Map<string, [string, Digest][]>();
  for (const [digest, holders] of current) {
    for (const h of holders) {
      const aa = parseAppArmorHolder(h);
      const inner = aa ? aa.holder : h;
      const drop = () => {
        dropped++;
        if (aa) droppedAppArmor.push(aa.name);
      };
      if (inner.startsWith('sandbox:') || inner.startsWith('container:')) {
        if (scan.live.has(inner)) keep.set(h, digest);
        else drop();
      } else if (inner.startsWith(PENDING_PREFIX)) {
        const p = parsePending(inner);
        const made = p.identity !== undefined ? scan.byIdentity.get(p.identity) : undefined;
        if (ctx.inflight.has(inner)) keep.set(h, digest);
        else if (made !== undefined) {
          const to = aa ? appArmorHolder(aa.name, made) : made;
          const list = takeovers.get(to) ?? [];
          list.push([h, digest]);
          takeovers.set(to, list);
        }
        else if (!pendingWithinGrace(ctx.now - p.at)) drop();
        else {
          keep.set(h, digest);
          recheck = Math.min(recheck ?? Infinity, p.at + PENDING_GRACE_MS - ctx.now);
        }
      }
    }
  }
  // The object takes its pending holders' artifact over, when they name one and it holds no
  // other. Several artifacts for one object (retries of a lost create naming different ones)
  // cannot tell which it runs: each stays held by its pending holder while the object lives
  // (dropped once it is gone), and its runtime config names its own below.
  for (const [to, pending] of takeovers) {
    const digests = new Set(pending.map(([, d]) => d));
    const held = keep.get(to);
    if (digests.size === 1 && (held === undefined || digests.has(held))) keep.set(to, pending[0]![1]);
    else for (const [h, d] of pending) keep.set(h, d);
  }
  let found = 0;
  const effective = new Set<string>();
  for (const [obj, p] of scan.profiles) {
    for (const path of p.seccomp) {
      const sha = spokeEffectiveSha(ctx.spokeDir, path);
      if (sha !== undefined) effective.add(sha);
      const origin = sha !== undefined && !keep.has(obj) ? await ctx.originOf(sha) : undefined;
      if (origin !== undefined) {
        keep.set(obj, origin);
        found++;
      }
    }
    for (const name of p.appArmor) {
      const sha = spokeAppArmorSha(name);
      const h = appArmorHolder(name, obj);
      const origin = sha !== undefined && !keep.has(h) ? await ctx.originOf(sha) : undefined;
      if (origin !== undefined) {
        keep.set(h, origin);
        found++;
      }
    }
  }
  return { keep, dropped, droppedAppArmor, found, recheck, effective };
}
