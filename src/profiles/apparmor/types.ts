// The structured AppArmor profile of KEP-6061 §4 (the Security Profiles Operator's abstract
// format, as the security-profiles-merger library models it), not AppArmor policy text:
//
//   {"executable":{"allowedExecutables":[],"allowedLibraries":[]},
//    "filesystem":{"readOnlyPaths":[],"writeOnlyPaths":[],"readWritePaths":[]},
//    "network":{"allowRaw":bool,"allowedProtocols":{"allowTcp":bool,"allowUdp":bool}},
//    "capability":{"allowedCapabilities":[]}}
//
// Every member is optional in a decoded document (JSON null reads as absent, as in Go). What an
// absent member means is decided once, in the merge (intersect.ts): nothing permitted.

export interface AppArmorExecutable {
  allowedExecutables?: string[];
  allowedLibraries?: string[];
}

export interface AppArmorFilesystem {
  readOnlyPaths?: string[];
  writeOnlyPaths?: string[];
  readWritePaths?: string[];
}

export interface AppArmorProtocols {
  allowTcp?: boolean;
  allowUdp?: boolean;
}

export interface AppArmorNetwork {
  allowRaw?: boolean;
  allowedProtocols?: AppArmorProtocols;
}

export interface AppArmorCapability {
  allowedCapabilities?: string[];
}

/** A decoded profile: an artifact, a baseline, or an effective profile. */
export interface AppArmorProfile {
  executable?: AppArmorExecutable;
  filesystem?: AppArmorFilesystem;
  network?: AppArmorNetwork;
  capability?: AppArmorCapability;
}

/** What the merge returns: every section, list and boolean present; lists sorted; names upper-case. */
export interface EffectiveAppArmorProfile {
  executable: Required<AppArmorExecutable>;
  filesystem: Required<AppArmorFilesystem>;
  network: { allowRaw: boolean; allowedProtocols: Required<AppArmorProtocols> };
  capability: Required<AppArmorCapability>;
}

export const FILESYSTEM_LISTS = ['readOnlyPaths', 'writeOnlyPaths', 'readWritePaths'] as const;
export const EXECUTABLE_LISTS = ['allowedExecutables', 'allowedLibraries'] as const;
export type FilesystemList = (typeof FILESYSTEM_LISTS)[number];
export type ExecutableList = (typeof EXECUTABLE_LISTS)[number];
export type PathList = FilesystemList | ExecutableList;
/** JSON path of a list: `filesystem.readOnlyPaths`, `executable.allowedLibraries`. */
export const LIST_SECTION: Readonly<Record<PathList, 'filesystem' | 'executable'>> = {
  readOnlyPaths: 'filesystem',
  writeOnlyPaths: 'filesystem',
  readWritePaths: 'filesystem',
  allowedExecutables: 'executable',
  allowedLibraries: 'executable',
};

export type NetworkPermission = 'allowRaw' | 'allowTcp' | 'allowUdp';

/**
 * Access an entry grants: filesystem `r`, `w`, `rw`; executables `x`; libraries `m`; `none`.
 * (How these become AppArmor permissions is render.ts's business.)
 */
export type PathAccess = 'r' | 'w' | 'rw' | 'x' | 'm' | 'none';

/** Only the node baseline can constrain an AppArmor artifact (KEP-6061: baseProfile is RuntimeDefault only). */
export type AppArmorConstrainedBy = 'baseline';

/** One thing the merge made stricter than the artifact asked for (KEP-6061 §7 constraint log). */
export type AppArmorConstraint =
  | { kind: 'capability'; capability: string; by: AppArmorConstrainedBy }
  | { kind: 'network'; permission: NetworkPermission; by: AppArmorConstrainedBy }
  | {
      kind: 'path';
      list: PathList;
      path: string;
      artifact: PathAccess;
      /** What the effective profile grants under this exact entry. */
      effective: PathAccess;
      /** Narrower entries of the effective profile this artifact entry still contributes to. */
      narrowedTo?: { path: string; access: PathAccess }[];
      by: AppArmorConstrainedBy;
    };

export interface AppArmorMergeResult {
  profile: EffectiveAppArmorProfile;
  /** Canonical JSON of `profile`: equal inputs give byte-identical bytes. */
  bytes: Buffer;
  /** sha256:<hex> of `bytes`. */
  digest: string;
  constrained: AppArmorConstraint[];
}
