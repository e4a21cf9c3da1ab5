// The few CRI messages spoke owns or edits, hand-coded on wire.ts and wire-write.ts (no protobufjs at start-up).
// Field numbers are those of proto/api.proto (which follows kubernetes/cri-api and KEP-6061).

import {
  FieldCursor,
  getMergedAt,
  getMergedMessage,
  getSingleMessage,
  getString,
  getStrings,
  getEnum,
  getVarint,
  WIRE_LEN,
  WIRE_VARINT,
  WireError,
} from './wire.js';
import {
  boolField,
  encodeTag,
  encodeVarint,
  lenField,
  replaceMessageAt,
  stringField,
  varintField,
  varintSize,
  withoutField,
  writeVarint,
} from './wire-write.js';
import { getStringMap } from './wire-map.js';

// ---- paths to the seccomp SecurityProfile
/** RunPodSandboxRequest.config(1) → PodSandboxConfig.linux(8) → LinuxPodSandboxConfig.security_context(2) → .seccomp(9) */
export const POD_SECCOMP_IN_RUN = [1, 8, 2, 9] as const;
export const POD_APPARMOR_IN_RUN = [1, 8, 2, 10] as const;
/** CreateContainerRequest.config(2) → ContainerConfig.linux(15) → LinuxContainerConfig.security_context(2) → .seccomp(15) */
export const CTR_SECCOMP_IN_CREATE = [2, 15, 2, 15] as const;
export const CTR_APPARMOR_IN_CREATE = [2, 15, 2, 16] as const;
/** CreateContainerRequest.sandbox_config(3) → PodSandboxConfig.linux(8) → security_context(2) → seccomp(9) */
export const POD_SECCOMP_IN_CREATE = [3, 8, 2, 9] as const;
export const POD_APPARMOR_IN_CREATE = [3, 8, 2, 10] as const;
/** The security contexts: RunPodSandboxRequest.config(1).linux(8).security_context(2), and in
 *  CreateContainerRequest the container's config(2).linux(15).security_context(2). */
export const POD_SECCTX_IN_RUN = [1, 8, 2] as const;
export const CTR_SECCTX_IN_CREATE = [2, 15, 2] as const;
/**
 * The deprecated strings that named a profile before the SecurityProfile messages, which a
 * runtime still reads when the message beside them is absent (containerd does, tested in
 * test/integration/shim-annotations.test.ts; CRI-O is not tested here), CRI-O's AppArmor also
 * when the string is `runtime/default` (replaceProfileAt), and which older kubelets send alone
 * (AppArmor until the message came, seccomp before it):
 * LinuxSandboxSecurityContext.seccomp_profile_path(7); LinuxContainerSecurityContext
 * .apparmor_profile(9) and .seccomp_profile_path(10). By a profile message's path: where the
 * string beside it is, if there is one.
 */
function deprecatedProfileField(profilePath: readonly number[]): { securityContext: readonly number[]; field: number } | undefined {
  const field = DEPRECATED_BY_PATH.get(profilePath.join('.'));
  return field === undefined ? undefined : { securityContext: profilePath.slice(0, -1), field };
}
const DEPRECATED_BY_PATH: ReadonlyMap<string, number> = new Map([
  [POD_SECCOMP_IN_RUN.join('.'), 7],
  [POD_SECCOMP_IN_CREATE.join('.'), 7],
  [CTR_SECCOMP_IN_CREATE.join('.'), 10],
  [CTR_APPARMOR_IN_CREATE.join('.'), 9],
]);
/** profile_type of a deprecated string no runtime reads as a profile (a runtime refuses the call). */
export const PROFILE_UNREADABLE = -1;
/** LinuxSandboxSecurityContext.privileged(6); LinuxContainerSecurityContext.privileged(2). */
export const POD_PRIVILEGED = 6;
export const CTR_PRIVILEGED = 2;
/** RunPodSandboxRequest.config(1), .runtime_handler(2); CreateContainerRequest.pod_sandbox_id(1), .config(2), .sandbox_config(3). */
export const RUN_CONFIG = 1;
export const RUN_RUNTIME_HANDLER = 2;
export const CREATE_POD_SANDBOX_ID = 1;
export const CREATE_CONFIG = 2;
export const CREATE_SANDBOX_CONFIG = 3;
/** PodSandboxConfig.metadata(1) {name 1, uid 2, namespace 3}, .annotations(7) map<string,string>. */
export const SANDBOX_METADATA = 1;
export const SANDBOX_ANNOTATIONS = 7;
/** ContainerConfig.metadata(1) {name 1}, .annotations(10) map<string,string>. */
export const CONTAINER_METADATA = 1;
export const CONTAINER_ANNOTATIONS = 10;
/** StatusResponse.features(4); RuntimeFeatures.security_profile_oci_artifact(4). */
export const STATUS_FEATURES = 4;
export const FEATURE_OCI_ARTIFACT = 4;

// ---- SecurityProfile
export const PROFILE_RUNTIME_DEFAULT = 0;
export const PROFILE_UNCONFINED = 1;
export const PROFILE_LOCALHOST = 2;
export const PROFILE_OCI = 3;
/** SecurityProfileBase.BaseType: Unspecified (0) means no base (KEP-6061 §2). */
export const BASE_UNSPECIFIED = 0;
export const BASE_RUNTIME_DEFAULT = 1;
export const BASE_LOCALHOST = 2;

export interface SecurityProfileMsg {
  profileType: number;
  localhostRef: string;
  ociRef: string;
  base: { type: number; localhostRef: string } | undefined;
}

export function decodeSecurityProfile(buf: Uint8Array): SecurityProfileMsg {
  const baseBytes = getMergedMessage(buf, 4);
  return {
    profileType: getEnum(buf, 1),
    localhostRef: getString(buf, 2),
    ociRef: getString(buf, 3),
    base: baseBytes === undefined ? undefined : { type: getEnum(baseBytes, 1), localhostRef: getString(baseBytes, 2) },
  };
}

/**
 * The profile a runtime reads from a deprecated string when the message is absent (the CRI's
 * spelling: `runtime/default` and `docker/default`, `unconfined`, `localhost/<ref>`); undefined
 * for the empty string (none given). Anything else is PROFILE_UNREADABLE, `localhostRef` holding
 * the string for messages.
 */
function deprecatedProfile(value: string): SecurityProfileMsg | undefined {
  const profile = (profileType: number, localhostRef = ''): SecurityProfileMsg => ({ profileType, localhostRef, ociRef: '', base: undefined });
  if (value === '') return undefined;
  if (value === 'runtime/default' || value === 'docker/default') return profile(PROFILE_RUNTIME_DEFAULT);
  if (value === 'unconfined') return profile(PROFILE_UNCONFINED);
  if (value.startsWith('localhost/')) return profile(PROFILE_LOCALHOST, value.slice('localhost/'.length));
  return profile(PROFILE_UNREADABLE, value);
}

/**
 * The profile a runtime applies from `profilePath` of `payload`: the message when it is there,
 * else the deprecated string beside it (deprecatedProfile); undefined when neither is.
 */
export function profileAt(payload: Uint8Array, profilePath: readonly number[]): SecurityProfileMsg | undefined {
  const message = getMergedAt(payload, profilePath);
  return message !== undefined ? decodeSecurityProfile(message) : deprecatedProfileAt(payload, profilePath);
}

/** The deprecated string beside the (absent) message at `profilePath`, read as deprecatedProfile does. */
export function deprecatedProfileAt(payload: Uint8Array, profilePath: readonly number[]): SecurityProfileMsg | undefined {
  const deprecated = deprecatedProfileField(profilePath);
  const securityContext = deprecated && getMergedAt(payload, deprecated.securityContext);
  return securityContext === undefined ? undefined : deprecatedProfile(getString(securityContext, deprecated!.field));
}

/** `{profile_type: Localhost, localhost_ref: path}` */
function encodeLocalhostProfile(path: string): Buffer {
  return Buffer.concat([varintField(1, PROFILE_LOCALHOST), stringField(2, path)]);
}

/**
 * Sets the profile at `profilePath` to Localhost `ref`, and the deprecated string beside it to
 * `localhost/<ref>` (once), whether or not the request had one: CRI-O takes an apparmor_profile of
 * `runtime/default` over whatever the message beside it says, and a runtime built before the
 * message reads only the string (and containerd, with no string, applies its own default
 * AppArmor profile, not the merged one). A runtime that knows the message reads it first, as the
 * containerd 1.6.20 here does.
 */
export function replaceProfileAt(payload: Uint8Array, profilePath: readonly number[], ref: string): Buffer {
  const out = replaceMessageAt(payload, profilePath, encodeLocalhostProfile(ref));
  const deprecated = deprecatedProfileField(profilePath);
  if (deprecated === undefined) return out;
  // The security context is on the path just edited, so it occurs once.
  const { bytes } = withoutField(getMergedAt(out, deprecated.securityContext)!, deprecated.field);
  return replaceMessageAt(out, deprecated.securityContext, Buffer.concat([bytes, stringField(deprecated.field, `localhost/${ref}`)]));
}

/** The field bytes `security_profile_oci_artifact = true` inside RuntimeFeatures. */
export const OCI_FEATURE_TRUE = Buffer.concat([encodeTag(FEATURE_OCI_ARTIFACT, WIRE_VARINT), encodeVarint(1)]);

// ---- PullSecurityProfileArtifactRequest / Response
export const KIND_UNSPECIFIED = 0;
export const KIND_SECCOMP = 1;
export const KIND_APPARMOR = 2;

export interface AuthConfigMsg {
  username: string;
  password: string;
  auth: string;
  serverAddress: string;
  identityToken: string;
  registryToken: string;
}

export interface PullRequestMsg {
  image: string;
  userSpecifiedImage: string;
  auth: AuthConfigMsg | undefined;
  namespace: string;
  kind: number;
}

export function decodePullRequest(buf: Uint8Array): PullRequestMsg {
  const image = getMergedMessage(buf, 1);
  const auth = getMergedMessage(buf, 2);
  const sandbox = getMergedMessage(buf, 3);
  const meta = sandbox === undefined ? undefined : getMergedMessage(sandbox, 1);
  return {
    image: image === undefined ? '' : getString(image, 1),
    userSpecifiedImage: image === undefined ? '' : getString(image, 18),
    auth:
      auth === undefined
        ? undefined
        : {
            username: getString(auth, 1),
            password: getString(auth, 2),
            auth: getString(auth, 3),
            serverAddress: getString(auth, 4),
            identityToken: getString(auth, 5),
            registryToken: getString(auth, 6),
          },
    namespace: meta === undefined ? '' : getString(meta, 3),
    kind: getVarint(buf, 4),
  };
}

/**
 * PullSecurityProfileArtifactResponse {image_ref = 1; cached = 2}, written into one buffer: it
 * answers every warm pull, whose garbage sets that call's tail (docs/benchmarks.md).
 */
export function encodePullResponse(resolvedRef: string, cached: boolean): Buffer {
  const refBytes = Buffer.byteLength(resolvedRef, 'utf8');
  const refField = refBytes === 0 ? 0 : 1 + varintSize(refBytes) + refBytes;
  const out = Buffer.allocUnsafe(refField + (cached ? 2 : 0));
  let pos = 0;
  if (refBytes > 0) {
    out[pos++] = (1 << 3) | WIRE_LEN;
    pos = writeVarint(out, pos, refBytes);
    pos += out.write(resolvedRef, pos, 'utf8');
  }
  if (cached) {
    out[pos++] = (2 << 3) | WIRE_VARINT;
    out[pos] = 1;
  }
  return out;
}

// ---- List / Remove
export interface ProfileListItem {
  digest: string;
  references: readonly string[];
  size: number;
  kind: number;
  inUse: boolean;
  pulledAtNanos: bigint;
}

export function decodeListRequest(buf: Uint8Array): { kind: number } {
  return { kind: getVarint(buf, 1) };
}

export function encodeListResponse(items: readonly ProfileListItem[]): Buffer {
  return Buffer.concat(
    items.map((it) =>
      lenField(
        1,
        Buffer.concat([
          stringField(1, it.digest),
          ...it.references.map((r) => lenField(2, Buffer.from(r, 'utf8'))),
          varintField(3, it.size),
          varintField(4, it.kind),
          boolField(5, it.inUse),
          varintField(6, it.pulledAtNanos),
        ]),
      ),
    ),
  );
}

export function decodeListResponse(buf: Uint8Array): ProfileListItem[] {
  const out: ProfileListItem[] = [];
  for (const item of getRepeatedMessages(buf, 1)) {
    out.push({
      digest: getString(item, 1),
      references: getStrings(item, 2),
      size: getVarint(item, 3),
      kind: getVarint(item, 4),
      inUse: getVarint(item, 5) !== 0,
      pulledAtNanos: BigInt(getVarint(item, 6)),
    });
  }
  return out;
}

export function decodeRemoveRequest(buf: Uint8Array): { digest: string } {
  return { digest: getString(buf, 1) };
}

// ---- ids from responses/requests of lifecycle calls
/** RunPodSandboxResponse.pod_sandbox_id(1), CreateContainerResponse.container_id(1),
 *  RemoveContainerRequest.container_id(1), RemovePodSandboxRequest.pod_sandbox_id(1). */
export function decodeId(buf: Uint8Array): string {
  return getString(buf, 1);
}

/** What names a container before it has an id: its sandbox and ContainerMetadata name(1), attempt(2). */
export interface ContainerKey {
  sandbox: string;
  name: string;
  attempt: number;
}

/** What names a sandbox before it has an id: PodSandboxMetadata name(1), uid(2), namespace(3), attempt(4). */
export interface SandboxKey {
  name: string;
  uid: string;
  namespace: string;
  attempt: number;
}

function sandboxKey(md: Uint8Array): SandboxKey {
  return { name: getString(md, 1), uid: getString(md, 2), namespace: getString(md, 3), attempt: getVarint(md, 4) };
}

/** ListContainersResponse.containers(1): Container.id(1), pod_sandbox_id(2), metadata(3). */
export function decodeContainers(buf: Uint8Array): ({ id: string } & ContainerKey)[] {
  return getRepeatedMessages(buf, 1).map((c) => {
    const md = getSingleMessage(c, 3) ?? Buffer.alloc(0);
    return { id: getString(c, 1), sandbox: getString(c, 2), name: getString(md, 1), attempt: getVarint(md, 2) };
  });
}

/** ListPodSandboxResponse.items(1): PodSandbox.id(1), metadata(2). */
export function decodeSandboxes(buf: Uint8Array): ({ id: string } & SandboxKey)[] {
  return getRepeatedMessages(buf, 1).map((p) => ({ id: getString(p, 1), ...sandboxKey(getSingleMessage(p, 2) ?? Buffer.alloc(0)) }));
}

/** CreateContainerRequest: pod_sandbox_id(1), config(2).metadata(1); undefined without them. */
export function decodeCreateContainerKey(buf: Uint8Array): ContainerKey | undefined {
  const md = getSingleMessage(getSingleMessage(buf, 2) ?? Buffer.alloc(0), 1);
  const sandbox = getString(buf, 1);
  return md && sandbox ? { sandbox, name: getString(md, 1), attempt: getVarint(md, 2) } : undefined;
}

/** RunPodSandboxRequest: config(1).metadata(1); undefined without it. */
export function decodeRunPodSandboxKey(buf: Uint8Array): SandboxKey | undefined {
  const md = getSingleMessage(getSingleMessage(buf, 1) ?? Buffer.alloc(0), 1);
  return md ? sandboxKey(md) : undefined;
}

/** Container/PodSandboxStatusRequest: id(1), verbose(2) = true. */
export function encodeVerboseStatusRequest(id: string): Buffer {
  return Buffer.concat([stringField(1, id), boolField(2, true)]);
}

/** Container/PodSandboxStatusResponse.info(2)["info"]: the runtime's verbose JSON, if any. */
export function decodeVerboseInfo(buf: Uint8Array): string | undefined {
  return getStringMap(buf, 2).get('info');
}

export function getRepeatedMessages(buf: Uint8Array, field: number): Buffer[] {
  const out: Buffer[] = [];
  for (const f = new FieldCursor(buf); f.next(); ) {
    if (f.field !== field) continue;
    if (f.wireType !== WIRE_LEN) throw new WireError(`field ${field} is not length-delimited`);
    out.push(Buffer.from(buf.buffer, buf.byteOffset + f.valueStart, f.end - f.valueStart));
  }
  return out;
}
