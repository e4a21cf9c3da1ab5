// The calls that make or remove what holds a profile: RunPodSandbox / CreateContainer requests
// are edited (rewrite.ts), their profiles claimed in the in-use set and the claims committed once
// the runtime answered (inuse-claims.ts); RemovePodSandbox / RemoveContainer release them.

import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import { join } from 'node:path';
import { EFFECTIVE_SECCOMP_DIR } from '../core/constants.js';
import { SpokeError } from '../core/errors.js';
import { MAX_POLICY_CHANGES_PER_CREATE, type ProfileApplier } from './apply.js';
import type { Call, CallHost } from './call.js';
import type { ShimDeps } from './deps.js';
import { encodeFrame, formatGrpcTimeout } from './frame.js';
import type { CreateGate, Lease } from './gc.js';
import { CreateClaims } from './inuse-claims.js';
import { requestIdentity, type InUseTracker } from './inuse.js';
import type { LoggingProfiles } from './logging-profile.js';
import { decodeId } from './messages.js';
import { forward } from './relay.js';
import { SandboxHandlers } from './sandbox-handlers.js';
import type { AnnotationDeps, RewriteDeps, RewriteResult } from './rewrite.js';
import { GrpcCode } from './grpc-status.js';
import { deadlineOf, decodeRequest, holdMessage, namespaceShare, readBody } from './unary.js';

export type Role = 'sandbox' | 'container';
export type Rewrite = (payload: Buffer, deps: RewriteDeps) => Promise<RewriteResult>;

export interface EditedCallDeps<P> {
  host: CallHost;
  deps: ShimDeps<P>;
  applier: ProfileApplier<P>;
  inUse: InUseTracker;
  gate: CreateGate;
  /** Annotation mode's pull and checks; undefined: annotations are not read. */
  annotationDeps: AnnotationDeps | undefined;
  recordingKey: Buffer | undefined;
  /** The set needs a rebuild in `delayMs`. */
  scheduleRebuild: (delayMs: number) => void;
  /** Runtime handlers that enforce the profiles spoke applies (node config runtimeHandlers). */
  runtimeHandlers: ReadonlySet<string>;
}

export class EditedCalls<P> {
  /** The logging profiles recorded containers run under (ShimServer.start(), with `recording`). */
  logging: LoggingProfiles<P> | undefined;
  /** The effective directory by each of its names (ShimServer.start(): prepareEffectiveDir). */
  reservedSeccompDirs: readonly string[];

  private readonly sandboxHandlers: SandboxHandlers;

  constructor(private readonly d: EditedCallDeps<P>) {
    this.reservedSeccompDirs = [join(d.deps.seccompRoot, EFFECTIVE_SECCOMP_DIR)];
    this.sandboxHandlers = new SandboxHandlers(d.host.upstream);
  }

  async create(call: Call, headers: IncomingHttpHeaders, role: Role, rewrite: Rewrite): Promise<void> {
    // From the first profile resolved until the holder is recorded, out of gc's reach (gc.ts);
    // taken once every annotation of the request has been pulled (rewrite-annotations.ts
    // pullAnnotated), so a registry that never answers holds up no gc run (docs/gc.md#cost).
    const lease = this.d.gate.lease();
    try {
      await this.forwardEdited(call, headers, role, rewrite, lease);
    } finally {
      lease.release();
    }
  }

  private async forwardEdited(call: Call, headers: IncomingHttpHeaders, role: Role, rewrite: Rewrite, lease: Lease): Promise<void> {
    const { host, applier } = this.d;
    const stream = call.stream;
    const deadline = deadlineOf(headers, call.started);
    const body = await readBody(stream, host.bodies);
    let result: RewriteResult;
    let payload: Buffer;
    try {
      payload = decodeRequest(body, headers);
    } catch (e) {
      throw new SpokeError('InvalidArgument', `spoke shim: malformed gRPC request body: ${(e as Error).message}`, {}, { cause: e, reason: 'FRAME_INVALID' });
    }
    const held = holdMessage(host.bodies, stream, body, payload);
    // AppArmor profiles are loaded while the request is rewritten; whatever was claimed is
    // released again if the call ends before it is forwarded (inuse-claims.ts).
    const appArmor = this.d.deps.appArmor;
    const newClaims = () => new CreateClaims(this.d.inUse, host.logger, role, requestIdentity(role, payload));
    let claims = newClaims();
    const decidedUnder = new DecisionInputs(this.d.deps);
    // The current baseline's: a reloaded baseline bounds the next recorded container
    // (logging-profile.ts), and one reloaded after it was chosen decides the create again.
    const logging = this.logging;
    const loggingProfile =
      logging === undefined
        ? undefined
        : async () => {
            await decidedUnder.note();
            return logging.pathFor(this.d.deps.baseline());
          };
    const deps: RewriteDeps = {
      seccomp: async (p, c) => {
        await lease.acquire();
        await decidedUnder.note();
        return applier.apply(p, c);
      },
      appArmor: async (p, c) => {
        await lease.acquire();
        await decidedUnder.note();
        const gone = callGone(call.stream, deadline);
        const prepared = await applier.prepareAppArmor(p, { ...c, gone });
        await claims.claimAppArmor(prepared.name, prepared.digest, () => appArmor!.load(prepared, gone));
        return prepared;
      },
      ...(this.d.annotationDeps ? { annotations: whileCallWaits(this.d.annotationDeps, stream, deadline) } : {}),
      recording: { loggingProfile, key: this.d.recordingKey, log: (level, msg, fields) => host.logger.log(level, msg, fields) },
      reservedSeccompDirs: this.reservedSeccompDirs,
      runtimeHandler: { allowed: this.d.runtimeHandlers, ofSandbox: (id) => this.sandboxHandlers.ofSandbox(id) },
      namespaceShare: namespaceShare(host.bodies, held, stream),
    };
    let replace: Record<string, string> | undefined;
    for (let attempt = 1; ; attempt++) {
      try {
        result = await rewrite(payload, deps);
      } catch (e) {
        await claims.abort();
        throw e;
      }
      if (stream.closed || stream.destroyed) {
        await claims.abort();
        return;
      }
      if (!result.edited) {
        // Not ours: the original bytes, headers untouched.
        forward(host, call, { body });
        return;
      }
      // A create can wait long between its decisions and its forwarding (the runtime's default
      // profile read again after a reconnect, apparmor_parser, the in-use queue behind other
      // creates' holder records and rebuilds): a node policy, baseline or runtime default that
      // changed meanwhile (a rule flipped to enforce, a deny rule added, a runtime upgraded)
      // decides it anew, so that no container runs under a verdict whose reason is gone
      // (docs/shim.md). Checked once the pending holder is
      // recorded, the last wait before forwarding.
      if (await decidedUnder.unchanged()) {
        await claims.begin(result.holds);
        if (await decidedUnder.unchanged()) break;
        await claims.withdraw();
      } else {
        await claims.abort();
      }
      if (attempt >= MAX_POLICY_CHANGES_PER_CREATE) {
        throw new SpokeError('Unavailable', `spoke shim: the node policy, a baseline or the runtime default changed ${attempt} times while this ${role} create was decided; try again`, {}, { reason: 'POLICY_CHANGED' });
      }
      host.logger.log('info', 'create decided again: the node policy, a baseline or the runtime default changed while it was rewritten', { role, attempt });
      // This attempt holds nothing now: the next one pulls its annotations again (under the new
      // policy, perhaps from the registry) without the lease, and takes it anew at its first
      // profile (docs/gc.md#cost).
      lease.release();
      claims = newClaims();
      decidedUnder.reset();
    }
    // After the last wait: the client may have gone, or its deadline passed, meanwhile.
    if (stream.closed || stream.destroyed) {
      await claims.withdraw();
      return;
    }
    if (deadline !== undefined) {
      const left = deadline - performance.now();
      if (left <= 0) {
        await claims.withdraw();
        host.endCall(call, GrpcCode.DEADLINE_EXCEEDED, 'deadline exceeded', 'DEADLINE');
        return;
      }
      replace = { 'grpc-timeout': formatGrpcTimeout(left) };
    }
    // The pending holder recorded above keeps the profile until the commit (inuse-holders.ts), so
    // the client's answer does not wait for the commit.
    forward(host, call, {
      ...(replace ? { replace } : {}),
      body: encodeFrame(result.payload),
      teeResponse: true,
      completeAfterResponse: true,
      onComplete: (status, responseBody) => claims.settle(status, responseBody),
    });
  }

  async remove(call: Call, headers: IncomingHttpHeaders, role: Role): Promise<void> {
    const body = await readBody(call.stream, this.d.host.bodies);
    let id = '';
    try {
      id = decodeId(decodeRequest(body, headers));
    } catch {
      id = '';
    }
    forward(this.d.host, call, {
      body,
      onComplete: async (status) => {
        if (status !== '0' || id === '') return;
        await this.d.inUse.released(`${role}:${id}`).catch((e) => this.d.host.logger.log('warn', 'release failed', { error: (e as Error).message }));
        // Containers go with their sandbox: let the runtime's list say which remain.
        if (role === 'sandbox') this.d.scheduleRebuild(100);
      },
    });
  }
}

/** Fires at `deadline` (performance.now() time, from the call's grpc-timeout). */
function untilDeadline(deadline: number): AbortSignal {
  return AbortSignal.timeout(Math.max(0, Math.ceil(deadline - performance.now())));
}

/** Fires when the call's client has gone (its stream closed) or its deadline (grpc-timeout) passed. */
function callGone(stream: ServerHttp2Stream, deadline: number | undefined): AbortSignal {
  const closed = new AbortController();
  if (stream.closed || stream.destroyed) closed.abort();
  else stream.once('close', () => closed.abort());
  return deadline === undefined ? closed.signal : AbortSignal.any([closed.signal, untilDeadline(deadline)]);
}

/**
 * Annotation pulls end when the create's client has gone or its deadline (grpc-timeout) passed,
 * like PullSecurityProfile: a create the kubelet gave up on holds no wait on a registry (its
 * fetch goes on only for others waiting on it: src/pull/flights.ts). The signal is made only when
 * the pipeline asks for it (a fetch): a cached pull never does.
 */
function whileCallWaits(deps: AnnotationDeps, stream: ServerHttp2Stream, deadline: number | undefined): AnnotationDeps {
  return {
    ...deps,
    pull: (req) => {
      let signal: AbortSignal | undefined;
      return deps.pull({ ...req, signal: () => (signal ??= callGone(stream, deadline)) });
    },
  };
}

/**
 * The node policy (by hash), baselines (seccomp by object, AppArmor by its reload count) and the
 * runtime's default profile (by hash; none while it is read again) in force when a create's first
 * profile decision began. Noted on first use only: a create without an OCI or AppArmor profile or
 * a recording never asks for the policy.
 */
class DecisionInputs<P> {
  private noted: { policyHash: string | undefined; baseline: P; appArmorBaseline: number | undefined; runtimeDefault: string | undefined } | undefined;

  constructor(private readonly deps: Pick<ShimDeps<P>, 'policy' | 'baseline' | 'appArmor' | 'runtimeDefault'>) {}

  async note(): Promise<void> {
    if (this.noted !== undefined) return;
    const policyHash = await this.policyHash();
    this.noted ??= { policyHash, baseline: this.deps.baseline(), appArmorBaseline: this.deps.appArmor?.baselineGeneration?.(), runtimeDefault: this.runtimeDefault() };
  }

  /**
   * True when nothing was noted, or the policy, baselines and runtime default are the noted ones
   * still. A runtime default unknown when noted (being read) counts as changed once it is known: a
   * merge may have waited for that read.
   */
  async unchanged(): Promise<boolean> {
    const noted = this.noted;
    if (noted === undefined) return true;
    if (noted.baseline !== this.deps.baseline() || noted.appArmorBaseline !== this.deps.appArmor?.baselineGeneration?.()) return false;
    if (noted.runtimeDefault !== this.runtimeDefault()) return false;
    return noted.policyHash === (await this.policyHash());
  }

  private runtimeDefault(): string | undefined {
    return this.deps.runtimeDefault?.current?.()?.sha;
  }

  reset(): void {
    this.noted = undefined;
  }

  /** Undefined while no policy is in force: the decisions themselves refuse then. */
  private policyHash(): Promise<string | undefined> {
    return this.deps.policy().then(
      (p) => p.hash,
      () => undefined,
    );
  }
}
