// `spoke shim`'s command line: its help, its flags, and the node config they override (every
// setting may come from the config file; flags win).

import { loadNodeConfig, LOG_LEVELS, type NodeConfig } from '../../config/node-config.js';
import type { LogLevel } from '../../core/runtime.js';
import { parseCommand, type Parsed } from '../args.js';
import { UsageError } from '../errors.js';

const HELP = `usage: spoke shim [--listen SOCK --upstream SOCK] [options]

The KEP-6061 CRI shim. Serves CRI on --listen (point the kubelet's
--container-runtime-endpoint at it) and forwards every call to the runtime on --upstream
(containerd or CRI-O) byte for byte, except: PullSecurityProfileArtifact /
PullSecurityProfile, ListSecurityProfiles and RemoveSecurityProfile are answered by spoke;
RunPodSandbox / CreateContainer requests whose seccomp profile is of type OCI get a Localhost
profile = node baseline ∩ pod base profile ∩ artifact (a RuntimeDefault base is the runtime's
own default profile, see below); a KEP OCI profile on a privileged container or sandbox is
refused (INVALID_ARGUMENT: the runtime would not enforce it); an AppArmor profile of type OCI is
merged with the shipped AppArmor baseline (policy/apparmor-baseline.json), loaded under a
generated name and set as Localhost (fails where the kernel has no AppArmor); the Status
response advertises features.security_profile_oci_artifact. Every setting may come from the
config file; flags win.

options:
  --config FILE        node config, YAML (default /etc/spoke/config.yaml, all defaults when
                       that file is absent); a FILE given here that is missing or unreadable
                       is an error (FILE_UNREADABLE)
  --listen SOCK        unix socket to serve CRI on, created mode 0660 (config: listen;
                       default /run/spoke/spoke.sock). An existing non-socket path is refused.
  --upstream SOCK      the runtime's CRI socket (config: upstream; default
                       /run/containerd/containerd.sock). Calls fail with UNAVAILABLE while it is
                       down; the shim reconnects with backoff.
  --store DIR          content-addressed profile store (config: storeDir; default /var/lib/spoke)
  --seccomp-root DIR   the kubelet's seccomp root; effective profiles are written to
                       DIR/spoke/<sha256>.json (config: seccompRoot; default /var/lib/kubelet/seccomp)
  --baseline FILE      node baseline seccomp profile intersected into every OCI profile; checked
                       at start, a bad file stops the shim (config: baselines by architecture,
                       then baseline; default: the shipped policy/seccomp-baseline.json, or
                       policy/seccomp-baseline-arm64.json on arm64; docs/multi-arch.md)
  --policy FILE        node admin policy, deny by default (config: policy; default
                       /etc/spoke/policy.yaml); reloaded on change and on SIGHUP, an invalid
                       file keeps the last good policy
  --metrics ADDR       serve Prometheus metrics on host:port at /metrics (config: metrics;
                       default off)
  --log-level L        debug, info, warn or error (config: logLevel; default info); logs are
                       JSON lines on stderr
  --auth-file FILE     registry credentials, docker config.json format (config: authFile);
                       the kubelet's AuthConfig, when sent, is used for that pull only
  --ca-file FILE       CA bundle (PEM) trusted for every registry and mirror in addition to
                       Node's built-in roots, for registries with a private CA (config: caFile); read at
                       start, an unreadable file or one that is not wholly PEM CERTIFICATE
                       blocks that parse stops the shim;
                       re-read on SIGHUP (an invalid file keeps the last good one)
  --annotations        annotation mode, for kubelets without KEP-6061 (config: annotations;
                       default off): pod annotations seccomp.profiles.spoke.dev/pod|<container>
                       and apparmor.profiles.spoke.dev/… name digest references that are pulled
                       (node policy, node credentials) and applied like OCI profiles. A KEP OCI
                       profile wins; RuntimeDefault, Unconfined and unset are replaced; Localhost
                       or a privileged container with an annotation fails the call
  --recording          recording (default off; no config key): writes the logging profile (the
                       node baseline, with SCMP_ACT_LOG for every call it lets through) to
                       <store>/recording/log-<sha256>.json and runs the containers of pods
                       annotated recording.spoke.dev/name (all, or those listed in
                       recording.spoke.dev/containers: a,b) under it, for spoke recorder.
                       Replaced: an unset or RuntimeDefault seccomp profile and, when the proven
                       marking lists the containers, the container's own OCI profile or own
                       seccomp.profiles.spoke.dev/<container> annotation (the binding the
                       webhook wrote). Kept (logged): any other profile inherited from the pod,
                       the pod-wide annotation, Localhost, Unconfined and privileged containers
                       (the logging profile is as loose as the baseline, which may be looser
                       than RuntimeDefault). Only a marking with the controller's
                       recording.spoke.dev/proof (HMAC under the recording key, not expired)
                       counts; any other is ignored (logged) and the container keeps its own
                       profile. Refuses to start without --recording-key. Without this flag the
                       annotation is ignored
  --recording-key FILE the cluster's recording key, the same bytes as the controller's
                       --recording-key (config: recordingKey; 32 to 4096 bytes)

RuntimeDefault: at start and after every reconnect to the runtime, the shim reads the runtime's
default seccomp profile from the runtime itself (a throwaway sandbox and container from the
sandbox image that CRI Status names, created with RuntimeDefault, read from the runtime spec and
removed; see spoke runtime-default). Config key runtimeDefault: FILE pins a profile instead.
While it is not known, OCI profiles with a RuntimeDefault base (and annotations replacing a
RuntimeDefault profile) fail UNAVAILABLE; the base is never dropped. A baseline that permits
what the runtime default denies is logged as a warning at start.

gc (config only: gc: {interval: 10m, minAge: 1h, maxStoreBytes: N}; docs/gc.md): every interval
the in-use set is rebuilt from the runtime, then profiles no container uses and no pin holds
are removed once unused for minAge (above maxStoreBytes, unused ones least recently used
first, even younger ones), and so are unused effective files DIR/spoke/<sha256>.json.

signals: SIGTERM/SIGINT stop gracefully (calls in flight finish, the socket is removed);
the policy, its key files, the seccomp baseline and the auth file are reloaded when their files
change, and on SIGHUP with the AppArmor baseline and the CA bundle (an invalid file keeps the
last good one); SIGHUP also has the next AppArmor profile read apparmor_parser's identity again
(an edit of parser.conf or its features file).`;

export interface ShimOptions {
  config: NodeConfig;
  /** --recording (no config key). */
  recording: boolean;
}

/**
 * The shim's flags that name what it checks at start (a file, a directory, its socket) and its
 * recording flags: `spoke status` checks what a shim given the same flags would read, a flag
 * winning over the config there as here (docs/cli.md#node).
 */
const checkedFlags = {
  listen: { type: 'string' },
  store: { type: 'string' },
  'seccomp-root': { type: 'string' },
  baseline: { type: 'string' },
  policy: { type: 'string' },
  'auth-file': { type: 'string' },
  'ca-file': { type: 'string' },
  recording: { type: 'boolean' },
  'recording-key': { type: 'string' },
} as const;

/** The shim's other flags: `spoke status` takes them as the shim does, checks nothing they name, and says so. */
export const uncheckedFlags = {
  upstream: { type: 'string' },
  metrics: { type: 'string' },
  'log-level': { type: 'string' },
  annotations: { type: 'boolean' },
} as const;

/** Every flag of `spoke shim` (and of `spoke status`, which takes the shim's command line). */
export const shimFlags = { config: { type: 'string' }, ...checkedFlags, ...uncheckedFlags } as const;

/**
 * The shim's flags read as the shim reads them: --recording, and the node config with every
 * other flag winning over its key. A value the shim refuses is refused (a usage error with `help`).
 * `readConfig` reads the node config file, as the shim reads the files it trusts (src/cli/trusted-file.ts).
 */
export function shimFlagsRead(values: Parsed<typeof shimFlags>['values'], help: string, readConfig: (path: string) => Buffer): ShimOptions {
  const level = values['log-level'];
  if (level !== undefined && !(LOG_LEVELS as readonly string[]).includes(level)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}\n${help}`);
  const config = loadNodeConfig(
    values.config,
    {
      listen: values.listen,
      storeDir: values.store,
      seccompRoot: values['seccomp-root'],
      baseline: values.baseline,
      policy: values.policy,
      authFile: values['auth-file'],
      caFile: values['ca-file'],
      recordingKey: values['recording-key'],
      upstream: values.upstream,
      metrics: values.metrics,
      logLevel: level as LogLevel | undefined,
      annotations: values.annotations === true ? true : undefined,
    },
    { readFile: readConfig },
  );
  return { config, recording: values.recording === true };
}

/** argv → the node config with the flags applied; undefined when --help was asked for (printed). */
export function parseShimOptions(argv: string[], readConfig: (path: string) => Buffer): ShimOptions | undefined {
  const { values, help } = parseCommand(argv, shimFlags, HELP, [0, 0]);
  return help ? undefined : shimFlagsRead(values, HELP, readConfig);
}
