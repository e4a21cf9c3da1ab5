// RuntimeDefault as the pod's base profile (KEP-6061 §4: baseline ∩ pod base ∩ artifact): the
// applier merges the runtime default as the second input with the real seccomp library and a real
// store; an unknown runtime default fails the call instead of dropping the base; the source of
// the runtime default fails closed across reconnects; BaseTypeUnspecified means no base.

import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type ServerHttp2Session } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ProfileApplier } from '../../../src/cri/apply.js';
import type { AppArmorOps, ShimDeps, UnaryCaller } from '../../../src/cri/deps.js';
import { decodeRuntimeDefault, seccompOps } from '../../../src/cri/seccomp.js';
import { BASE_LOCALHOST, BASE_RUNTIME_DEFAULT, BASE_UNSPECIFIED, PROFILE_OCI, type SecurityProfileMsg } from '../../../src/cri/messages.js';
import { baselineLooserThanRuntimeDefault } from '../../../src/cri/baseline-looser.js';
import { RuntimeDefaultSource } from '../../../src/cri/runtime-default.js';
import { Upstream } from '../../../src/cri/upstream.js';
import { PROBE_LABEL, readRuntimeDefault, seccompOfStatusInfo, type RuntimeDefaultReading } from '../../../src/cri/runtime-default-probe.js';
import { decode, encode, type Msg } from '../../helpers/cri-client.js';
import { applierDeps } from '../../helpers/shim.js';
import { SpokeError } from '../../../src/core/errors.js';
import { sha256Digest, type Digest } from '../../../src/core/digest.js';
import { silentLogger, type Logger } from '../../../src/core/runtime.js';
import { decodeSeccomp, evaluate, type SeccompProfile } from '../../../src/profiles/seccomp/index.js';
import { ProfileStore } from '../../../src/store/store.js';
import { parsePolicy } from '../../../src/policy/load.js';
import { spokeError } from '../../helpers/assert.js';

const DAY_MS = 86_400_000;
const ARCHS = ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'];
const json = (o: unknown) => Buffer.from(JSON.stringify(o));
const ALLOW_ALL = json({ defaultAction: 'SCMP_ACT_ALLOW', architectures: ARCHS });
/** A runtime default in containerd's shape: deny by default, an allow list, clone3 → ENOSYS. */
const RUNTIME_DEFAULT = json({
  defaultAction: 'SCMP_ACT_ERRNO',
  architectures: ARCHS,
  syscalls: [
    { names: ['read', 'write', 'openat', 'close', 'mkdir', 'mkdirat', 'execve', 'exit_group', 'clone'], action: 'SCMP_ACT_ALLOW' },
    { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 },
  ],
});
const OTHER_DEFAULT = json({ defaultAction: 'SCMP_ACT_ERRNO', architectures: ARCHS, syscalls: [{ names: ['read', 'write'], action: 'SCMP_ACT_ALLOW' }] });

const decodeRuntime = decodeRuntimeDefault;

/** The node policy the applier decides again at create: these tests' references, unsigned. */
const ALLOW_PROFILES_POLICY = parsePolicy(
  ['apiVersion: spoke.dev/v1alpha1', 'kind: NodeProfilePolicy', 'rules:', '  - scope: registry.example.com/profiles', '    kinds: [seccomp, apparmor]', '    unsigned: true', ''].join('\n'),
  'policy.yaml',
  () => assert.fail('no files'),
);

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

async function rig(o: { baseline?: Buffer; runtimeDefault?: ShimDeps<SeccompProfile>['runtimeDefault']; appArmor?: AppArmorOps } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'spoke-rd-'));
  dirs.push(dir);
  const store = new ProfileStore({ root: join(dir, 'store'), fsync: false });
  const put = async (name: string, bytes: Buffer, kind: 'seccomp' | 'apparmor' = 'seccomp') => {
    const manifest = json({ name, kind, config: { size: 2 } });
    const digest = sha256Digest(manifest) as Digest;
    const reference = `registry.example.com/profiles/${name}@${digest}`;
    await store.ingest({ digest, manifestBytes: manifest, layerDigest: sha256Digest(bytes) as Digest, layerBytes: bytes, kind, reference, rule: 'test', servedBy: 'registry.example.com' });
    return reference;
  };
  const baseline = decodeSeccomp(o.baseline ?? ALLOW_ALL);
  const seccompRoot = join(dir, 'seccomp');
  const applier = new ProfileApplier<SeccompProfile>(
    applierDeps({
      pipeline: { pull: async () => assert.fail('no pulls here') },
      store,
      baseline,
      seccompRoot,
      policy: async () => ALLOW_PROFILES_POLICY,
      ...(o.runtimeDefault ? { runtimeDefault: o.runtimeDefault } : {}),
      ...(o.appArmor ? { appArmor: o.appArmor } : {}),
    }),
  );
  const permissive = await put('permissive', ALLOW_ALL);
  const effectiveFiles = () => (readdirSync(join(seccompRoot, 'spoke'), { withFileTypes: true }) as { name: string; isFile(): boolean }[]).filter((e) => e.isFile()).map((e) => e.name);
  return { applier, put, permissive, seccompRoot, effectiveFiles };
}

const oci = (ref: string, base?: { type: number; localhostRef?: string }): SecurityProfileMsg => ({
  profileType: PROFILE_OCI,
  localhostRef: '',
  ociRef: ref,
  base: base ? { type: base.type, localhostRef: base.localhostRef ?? '' } : undefined,
});
const ctx = { who: 'container team-a/web/app' };
const pinned = (bytes: Buffer, logger: Logger = silentLogger) => new RuntimeDefaultSource<SeccompProfile>({ decode: decodeRuntime, logger, pinned: { file: '/etc/spoke/rd.json', bytes } });
const verdict = (path: string, syscall: string) => evaluate(decodeSeccomp(readFileSync(path)), { syscall });
const unavailable = spokeError({ code: 'Unavailable', reason: 'RUNTIME_DEFAULT_UNAVAILABLE' });

describe('RuntimeDefault base in the merge', () => {
  it('loose baseline + RuntimeDefault base + permissive artifact: denies everything the runtime default denies', async () => {
    const r = await rig({ runtimeDefault: pinned(RUNTIME_DEFAULT) });
    const rd = decodeSeccomp(RUNTIME_DEFAULT);
    const merged = await r.applier.apply(oci(r.permissive, { type: BASE_RUNTIME_DEFAULT }), ctx);
    for (const syscall of ['unshare', 'keyctl', 'mount', 'clone3', 'read', 'mkdir', 'ptrace']) {
      const want = evaluate(rd, { syscall });
      assert.deepEqual(verdict(merged.path, syscall), want, syscall);
    }
    // Without the base, the loose baseline lets the permissive artifact through: the base did it.
    const plain = await r.applier.apply(oci(r.permissive), ctx);
    assert.equal(verdict(plain.path, 'unshare').action, 'SCMP_ACT_ALLOW');
    assert.notEqual(plain.effectiveSha, merged.effectiveSha);
  });

  it('the runtime default is one input among three: the artifact and the baseline still constrain', async () => {
    const r = await rig({ baseline: json({ defaultAction: 'SCMP_ACT_ALLOW', architectures: ARCHS, syscalls: [{ names: ['write'], action: 'SCMP_ACT_ERRNO' }] }), runtimeDefault: pinned(RUNTIME_DEFAULT) });
    const denyMkdir = await r.put('deny-mkdir', json({ defaultAction: 'SCMP_ACT_ALLOW', architectures: ARCHS, syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO' }] }));
    const merged = await r.applier.apply(oci(denyMkdir, { type: BASE_RUNTIME_DEFAULT }), ctx);
    assert.equal(verdict(merged.path, 'mkdir').action, 'SCMP_ACT_ERRNO');
    assert.equal(verdict(merged.path, 'write').action, 'SCMP_ACT_ERRNO');
    assert.equal(verdict(merged.path, 'read').action, 'SCMP_ACT_ALLOW');
    assert.equal(verdict(merged.path, 'unshare').action, 'SCMP_ACT_ERRNO');
  });

  it('runtime default unknown: the call fails Unavailable (RUNTIME_DEFAULT_UNAVAILABLE), nothing is written, the base is never dropped', async () => {
    const failing = new RuntimeDefaultSource<SeccompProfile>({
      decode: decodeRuntime,
      logger: silentLogger,
      read: async () => {
        throw new SpokeError('Unavailable', 'no sandbox image', {}, { reason: 'RUNTIME_DEFAULT_UNAVAILABLE' });
      },
    });
    failing.refresh({ unary: async () => Buffer.alloc(0) });
    for (const runtimeDefault of [undefined, failing]) {
      const r = await rig(runtimeDefault ? { runtimeDefault } : {});
      await assert.rejects(r.applier.apply(oci(r.permissive, { type: BASE_RUNTIME_DEFAULT }), ctx), (e: unknown) => unavailable(e) && (e as Error).message.startsWith(ctx.who));
      assert.throws(() => r.effectiveFiles(), /ENOENT/);
      // An OCI profile without a base does not need it.
      await r.applier.apply(oci(r.permissive), ctx);
    }
    failing.close();
  });

  it('the merge cache follows the runtime default: a re-read with other content gives another effective profile', async () => {
    const reads = [RUNTIME_DEFAULT, OTHER_DEFAULT];
    const source = new RuntimeDefaultSource<SeccompProfile>({ decode: decodeRuntime, logger: silentLogger, read: async () => ({ bytes: reads.shift()!, sandboxImage: 'pause' }) });
    const upstream: UnaryCaller = { unary: async () => Buffer.alloc(0) };
    source.refresh(upstream);
    const r = await rig({ runtimeDefault: source });
    const first = await r.applier.apply(oci(r.permissive, { type: BASE_RUNTIME_DEFAULT }), ctx);
    assert.equal(verdict(first.path, 'mkdir').action, 'SCMP_ACT_ALLOW');
    source.refresh(upstream); // the runtime reconnected (restarted, maybe upgraded)
    const second = await r.applier.apply(oci(r.permissive, { type: BASE_RUNTIME_DEFAULT }), ctx);
    assert.notEqual(second.effectiveSha, first.effectiveSha);
    assert.equal(verdict(second.path, 'mkdir').action, 'SCMP_ACT_ERRNO');
  });

  it('BaseTypeUnspecified with nothing set means no base; with a localhost_ref it is refused (BASE_PROFILE)', async () => {
    const r = await rig();
    const none = await r.applier.apply(oci(r.permissive), ctx);
    const unspecified = await r.applier.apply(oci(r.permissive, { type: BASE_UNSPECIFIED }), ctx);
    assert.equal(unspecified.effectiveSha, none.effectiveSha);
    await assert.rejects(r.applier.apply(oci(r.permissive, { type: BASE_UNSPECIFIED, localhostRef: '/var/lib/kubelet/seccomp/x.json' }), ctx), (e: unknown) => e instanceof SpokeError && e.code === 'InvalidArgument' && e.reason === 'BASE_PROFILE');
    await assert.rejects(r.applier.apply(oci(r.permissive, { type: 7 }), ctx), (e: unknown) => e instanceof SpokeError && e.code === 'InvalidArgument' && e.reason === 'BASE_PROFILE');
  });

  it('AppArmor: an unspecified or RuntimeDefault base is accepted, a Localhost base refused', async () => {
    const appArmor: AppArmorOps = {
      enabled: async () => true,
      prepare: async () => ({ name: 'spoke-x', text: 'profile spoke-x {}', parser: 'p'.repeat(64), constrained: [] }),
      load: async () => ({ warnings: [] }),
      unload: async () => undefined,
    };
    const r = await rig({ appArmor });
    const ref = await r.put('aa', json({ capability: { allowedCapabilities: [] } }), 'apparmor');
    for (const type of [BASE_UNSPECIFIED, BASE_RUNTIME_DEFAULT]) assert.equal((await r.applier.prepareAppArmor(oci(ref, { type }), ctx)).name, 'spoke-x');
    await assert.rejects(r.applier.prepareAppArmor(oci(ref, { type: BASE_LOCALHOST, localhostRef: '/x' }), ctx), (e: unknown) => e instanceof SpokeError && e.code === 'InvalidArgument');
  });
});

describe('RuntimeDefaultSource', () => {
  const upstream: UnaryCaller = { unary: async () => Buffer.alloc(0) };

  it('after a reconnect, calls wait for the new read; a failed re-read fails closed instead of serving the old profile', async () => {
    // Each read waits until the test lets it finish.
    const gates: (() => void)[] = [];
    let started: () => void = () => {};
    const nextStart = () => new Promise<void>((r) => (started = r));
    let fail = false;
    const source = new RuntimeDefaultSource<SeccompProfile>({
      decode: decodeRuntime,
      logger: silentLogger,
      retryMs: 60_000,
      read: async (): Promise<RuntimeDefaultReading> => {
        const gate = new Promise<void>((r) => gates.push(r));
        started();
        await gate;
        if (fail) throw new Error('runtime not ready');
        return { bytes: RUNTIME_DEFAULT, sandboxImage: 'pause' };
      },
    });
    let start = nextStart();
    source.refresh(upstream);
    const waiting = source.get();
    await start;
    gates.shift()!();
    assert.equal((await waiting).sha.length, 64);
    fail = true;
    start = nextStart();
    source.refresh(upstream);
    assert.equal(source.current(), undefined);
    const during = source.get();
    await start;
    gates.shift()!();
    await assert.rejects(during, unavailable);
    // Within the retry window the last error is answered at once, no new read.
    await assert.rejects(source.get(), unavailable);
    source.close();
  });

  /** A source whose reads answer RUNTIME_DEFAULT after `before(n)` (n: the read's number, from 1). */
  function countingSource(before: (n: number) => Promise<void> = async () => undefined) {
    let reads = 0;
    const source = new RuntimeDefaultSource<SeccompProfile>({
      decode: decodeRuntime,
      logger: silentLogger,
      read: async (): Promise<RuntimeDefaultReading> => {
        await before(++reads);
        return { bytes: RUNTIME_DEFAULT, sandboxImage: 'pause' };
      },
    });
    return { source, reads: () => reads };
  }

  it('a read in flight when the connection is lost serves nobody: its profile is the runtime that went away', async () => {
    let finish!: () => void;
    let started!: () => void;
    const readStarted = new Promise<void>((r) => (started = r));
    const { source, reads } = countingSource(async (n) => {
      if (n > 1) return;
      started();
      await new Promise<void>((r) => (finish = r));
    });
    source.refresh(upstream);
    const waiting = source.get();
    await readStarted;
    source.forget();
    finish();
    await assert.rejects(waiting, unavailable);
    assert.equal(source.current(), undefined);
    // The next caller reads anew.
    await source.get();
    assert.equal(reads(), 2);
    source.close();
  });

  it("a lost connection forgets the profile: the runtime that comes back may be another version, and its own is read", async () => {
    const { source, reads } = countingSource();
    source.refresh(upstream);
    await source.get();
    assert.ok(source.current());
    source.forget();
    assert.equal(source.current(), undefined);
    await source.get();
    assert.equal(reads(), 2);
    source.close();
  });

  it('a runtime answering a grpc-message that is not valid percent-encoding fails the call, not the process', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spoke-rd-'));
    const sock = join(dir, 'rt.sock');
    const runtime = createServer();
    runtime.on('stream', (s) => {
      s.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      s.on('wantTrailers', () => s.sendTrailers({ 'grpc-status': '2', 'grpc-message': 'bad %ZZ' }));
      s.end();
    });
    await new Promise<void>((r) => runtime.listen(sock, () => r()));
    const up = new Upstream(sock, silentLogger);
    try {
      up.start();
      assert.ok(await up.waitUp(5000));
      await assert.rejects(up.unary('/runtime.v1.RuntimeService/Version', encode('VersionRequest', {})), /bad %ZZ/);
    } finally {
      await up.close();
      runtime.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('waiting for the runtime gives up after its timeout on the monotonic clock, however the wall clock steps meanwhile', { timeout: 10_000 }, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'spoke-rd-'));
    // The wall clock stands still (as if stepped back by all the time that passes); each reading
    // of the monotonic clock is a second later.
    t.mock.timers.enable({ apis: ['Date'], now: Date.parse('2025-06-02T00:00:00Z') });
    let now = 0;
    const up = new Upstream(join(dir, 'no-runtime.sock'), silentLogger, {}, () => (now += 1000));
    try {
      up.start();
      assert.equal(await up.waitUp(5000), false);
    } finally {
      await up.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the shim forgets the runtime default when its connection to the runtime drops', async () => {
    // A runtime that answers the connection and then goes away.
    const dir = mkdtempSync(join(tmpdir(), 'spoke-rd-'));
    const sock = join(dir, 'rt.sock');
    const runtime = createServer();
    const sessions: ServerHttp2Session[] = [];
    runtime.on('session', (s) => sessions.push(s));
    await new Promise<void>((r) => runtime.listen(sock, () => r()));
    const events: string[] = [];
    const up = new Upstream(sock, silentLogger, { onConnect: () => events.push('connect'), onDisconnect: () => events.push('disconnect') });
    try {
      up.start();
      assert.ok(await up.waitUp(5000));
      const dropped = new Promise<void>((r) => runtime.once('close', () => r()));
      runtime.close();
      for (const s of sessions) s.destroy();
      await dropped;
      while (!events.includes('disconnect')) await new Promise((r) => setImmediate(r));
      assert.deepEqual(events.slice(0, 2), ['connect', 'disconnect']);
    } finally {
      await up.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a reconnect starts the retry delay afresh: a restart whose connections flap does not leave a long backoff', async () => {
    const delays: number[] = [];
    const logger: Logger = { log: (_level, msg, fields) => void (msg.startsWith('runtime default profile unavailable') && delays.push(fields?.retryMs as number)) };
    let reads = 0;
    let done!: () => void;
    let failed = new Promise<void>((r) => (done = r));
    const source = new RuntimeDefaultSource<SeccompProfile>({
      decode: decodeRuntime,
      logger,
      retryMs: 1000,
      read: async (): Promise<RuntimeDefaultReading> => {
        reads++;
        setImmediate(done);
        throw new Error('server is not initialized yet');
      },
    });
    // Three connections in a row, each failing its read (a runtime restarting).
    for (let i = 0; i < 3; i++) {
      source.refresh(upstream);
      await failed;
      failed = new Promise<void>((r) => (done = r));
    }
    source.close();
    assert.equal(reads, 3);
    assert.deepEqual(delays, [1000, 1000, 1000]);
  });

  it('the retry delay after a failed read is measured on the monotonic clock: a wall-clock step neither stretches nor cuts it', async (t) => {
    const wall = Date.parse('2025-06-02T00:00:00Z');
    t.mock.timers.enable({ apis: ['Date'], now: wall });
    let now = 0;
    let reads = 0;
    const source = new RuntimeDefaultSource<SeccompProfile>({
      decode: decodeRuntime,
      logger: silentLogger,
      retryMs: 60_000,
      monotonicNow: () => now,
      read: async (): Promise<RuntimeDefaultReading> => {
        if (++reads === 1) throw new Error('server is not initialized yet');
        return { bytes: RUNTIME_DEFAULT, sandboxImage: 'pause' };
      },
    });
    try {
      source.refresh(upstream);
      await assert.rejects(source.get(), unavailable);
      // A second later the wall clock jumps a day ahead: still within the delay, no read.
      t.mock.timers.setTime(wall + DAY_MS + 1000);
      now += 1000;
      await assert.rejects(source.get(), unavailable);
      assert.equal(reads, 1, 'a forward step does not end the delay early');
      // A minute later NTP steps it back by a day: the delay is over, a caller reads again.
      t.mock.timers.setTime(wall + 61_000);
      now += 60_000;
      assert.equal((await source.get()).sha.length, 64);
      assert.equal(reads, 2, 'a backward step does not stretch the delay');
    } finally {
      source.close();
    }
  });

  it('never reached the runtime: unavailable; a bad pinned file stops the shim (InvalidArgument)', async () => {
    await assert.rejects(new RuntimeDefaultSource<SeccompProfile>({ decode: decodeRuntime, logger: silentLogger }).get(), unavailable);
    assert.throws(() => pinned(Buffer.from('{"defaultAction":"SCMP_ACT_BOGUS"}')), (e: unknown) => e instanceof SpokeError && e.code === 'InvalidArgument');
    const p = pinned(RUNTIME_DEFAULT);
    p.refresh(upstream); // pinned: reconnects change nothing
    assert.equal((await p.get()).profile.defaultAction, 'SCMP_ACT_ERRNO');
  });

  it('the runtime spec is read exactly or not at all', () => {
    const info = (seccomp: unknown) => ({ runtimeSpec: { linux: { seccomp } } });
    const bytes = seccompOfStatusInfo(info({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 4294967295, op: 'SCMP_CMP_EQ' }] }] }));
    assert.equal(decodeSeccomp(bytes).syscalls![0]!.args![0]!.value, 4294967295n);
    // 2^64-1 does not survive JSON.parse: refused, never rounded.
    assert.throws(() => seccompOfStatusInfo(JSON.parse('{"runtimeSpec":{"linux":{"seccomp":{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["x"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":18446744073709551615,"op":"SCMP_CMP_EQ"}]}]}}}}')), unavailable);
    assert.throws(() => seccompOfStatusInfo(info(undefined)), unavailable);
    assert.throws(() => seccompOfStatusInfo({}), unavailable);
  });
});

describe('readRuntimeDefault: the CRI calls of one read', () => {
  // The calls and their order against a scripted runtime (the real one: test/integration/shim-base-profiles.test.ts).
  function runtime(o: { leftovers?: { id: string; ageMs: number; metadata?: Msg }[]; failCreate?: boolean; failRemove?: string } = {}) {
    const calls: { method: string; req: Msg }[] = [];
    const seccompJson = JSON.parse(RUNTIME_DEFAULT.toString()) as unknown;
    const responses: Record<string, [string, string, (req: Msg) => Msg]> = {
      Status: ['StatusRequest', 'StatusResponse', () => ({ info: { config: JSON.stringify({ sandboxImage: 'registry.k8s.io/pause:3.9' }) } })],
      ListPodSandbox: [
        'ListPodSandboxRequest',
        'ListPodSandboxResponse',
        () => ({
          items: (o.leftovers ?? []).map((l) => ({
            id: l.id,
            metadata: l.metadata ?? { name: 'spoke-runtime-default', uid: `spoke-runtime-default-${l.id}`, namespace: 'spoke-system' },
            created_at: String(BigInt(Date.now() - l.ageMs) * 1_000_000n),
          })),
        }),
      ],
      RunPodSandbox: ['RunPodSandboxRequest', 'RunPodSandboxResponse', () => ({ pod_sandbox_id: 'probe-sb' })],
      CreateContainer: ['CreateContainerRequest', 'CreateContainerResponse', () => ({ container_id: 'probe-ctr' })],
      ContainerStatus: ['ContainerStatusRequest', 'ContainerStatusResponse', () => ({ info: { info: JSON.stringify({ runtimeSpec: { linux: { seccomp: seccompJson } } }) } })],
      RemoveContainer: ['RemoveContainerRequest', 'RemoveContainerResponse', () => ({})],
      StopPodSandbox: ['StopPodSandboxRequest', 'StopPodSandboxResponse', () => ({})],
      RemovePodSandbox: ['RemovePodSandboxRequest', 'RemovePodSandboxResponse', () => ({})],
    };
    const upstream: UnaryCaller = {
      unary: async (path, request) => {
        const method = path.slice(path.lastIndexOf('/') + 1);
        const [reqType, resType, answer] = responses[method]!;
        const req = decode(reqType, request);
        calls.push({ method, req });
        if (method === 'CreateContainer' && o.failCreate) throw Object.assign(new Error('image not found'), { grpcCode: 5 });
        if (method === 'StopPodSandbox' && req.pod_sandbox_id === o.failRemove) throw Object.assign(new Error('busy'), { grpcCode: 14 });
        return encode(resType, answer(req));
      },
    };
    return { upstream, calls };
  }

  it('Status → probe sandbox (host network, labelled) → RuntimeDefault container from the sandbox image → spec → removed', async () => {
    const r = runtime();
    const reading = await readRuntimeDefault(r.upstream);
    assert.deepEqual(JSON.parse(reading.bytes.toString()), JSON.parse(RUNTIME_DEFAULT.toString()));
    assert.equal(reading.sandboxImage, 'registry.k8s.io/pause:3.9');
    assert.deepEqual(r.calls.map((c) => c.method), ['Status', 'ListPodSandbox', 'RunPodSandbox', 'CreateContainer', 'ContainerStatus', 'RemoveContainer', 'StopPodSandbox', 'RemovePodSandbox']);
    assert.equal(r.calls[0]!.req.verbose, true);
    const run = r.calls[2]!.req.config as Msg;
    assert.deepEqual(run.labels, { [PROBE_LABEL]: 'true' });
    const sc = ((run.linux as Msg).security_context as Msg);
    assert.equal((sc.namespace_options as Msg).network, 'NODE');
    const create = r.calls[3]!.req.config as Msg;
    assert.equal((create.image as Msg).image, 'registry.k8s.io/pause:3.9');
    assert.deepEqual((((create.linux as Msg).security_context as Msg).seccomp as Msg).profile_type, 'RuntimeDefault');
    // containerd opens calls (chroot with CAP_SYS_CHROOT) for capabilities a container keeps: a
    // probe with none reads the strictest default, a subset of every container's.
    assert.deepEqual((((create.linux as Msg).security_context as Msg).capabilities as Msg).drop_capabilities, ['ALL']);
    assert.equal(r.calls[4]!.req.verbose, true);
  });

  it("leftovers are only the probe's own sandboxes (a pod may carry the label), and one that cannot be removed does not fail the read", async () => {
    const r = runtime({
      failRemove: 'stuck',
      leftovers: [
        { id: 'tenant', ageMs: 60 * 60_000, metadata: { name: 'web', uid: 'u-1', namespace: 'tenant-a' } },
        { id: 'stuck', ageMs: 60 * 60_000 },
        { id: 'old', ageMs: 60 * 60_000 },
      ],
    });
    await readRuntimeDefault(r.upstream);
    const stopped = r.calls.filter((c) => c.method === 'StopPodSandbox').map((c) => c.req.pod_sandbox_id);
    assert.deepEqual(stopped, ['stuck', 'old', 'probe-sb']);
  });

  it('a failed create still removes the probe sandbox; only leftovers older than any read are removed first', async () => {
    const r = runtime({ failCreate: true, leftovers: [{ id: 'old', ageMs: 60 * 60_000 }, { id: 'in-progress', ageMs: 1000 }] });
    await assert.rejects(readRuntimeDefault(r.upstream), unavailable);
    const removed = r.calls.filter((c) => c.method === 'RemovePodSandbox').map((c) => c.req.pod_sandbox_id);
    assert.deepEqual(removed, ['old', 'probe-sb']);
  });
});

describe('baseline against the runtime default', () => {
  it('a baseline looser than the runtime default is named, rule by rule, in a warning', () => {
    const logs: { level: string; msg: string; fields?: Record<string, unknown> }[] = [];
    const logger: Logger = { log: (level, msg, fields) => logs.push({ level, msg, ...(fields ? { fields } : {}) }) };
    const rd = { profile: decodeSeccomp(RUNTIME_DEFAULT), sha: 'a'.repeat(64) };
    const looser = baselineLooserThanRuntimeDefault(seccompOps, decodeSeccomp(ALLOW_ALL), rd, logger);
    assert.ok(looser.includes('default action'), looser.join(', '));
    assert.equal(logs.filter((l) => l.level === 'warn').length, 1);
    // A baseline at least as strict as the runtime default: nothing to say.
    logs.length = 0;
    assert.deepEqual(baselineLooserThanRuntimeDefault(seccompOps, decodeSeccomp(OTHER_DEFAULT), rd, logger), []);
    assert.deepEqual(logs, []);
  });
});

describe('the runtime default as a base', () => {
  it('may not make a runtime step pretend either: ERRNO(0) or EINVAL on PR_CAPBSET_DROP in it is refused, the base unavailable', () => {
    const silent = json({ defaultAction: 'SCMP_ACT_ALLOW', architectures: ARCHS, syscalls: [{ names: ['setuid', 'capset'], action: 'SCMP_ACT_ERRNO', errnoRet: 0 }] });
    assert.throws(() => decodeRuntimeDefault(silent), (e) => e instanceof SpokeError && e.reason === 'PROFILE_INVALID' && e.context.path === 'syscalls[0].errnoRet');
    const keep = json({ defaultAction: 'SCMP_ACT_ALLOW', architectures: ARCHS, syscalls: [{ names: ['prctl'], action: 'SCMP_ACT_ERRNO', errnoRet: 22 }] });
    assert.throws(() => decodeRuntimeDefault(keep), (e) => e instanceof SpokeError && e.reason === 'PROFILE_INVALID' && e.context.path === 'syscalls[0].errnoRet');
    // What the runtime itself loads is taken otherwise as it is (no artifact rules).
    decodeRuntimeDefault(OTHER_DEFAULT);
  });
});
