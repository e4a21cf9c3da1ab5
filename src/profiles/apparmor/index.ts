// AppArmor profiles for KEP-6061 (beta): strict decode of the structured JSON format, the artifact
// rules, the intersection with the node baseline and its constraint log, and rendering to policy
// text under a generated name. Pure: no I/O (apparmor_parser lives in src/apparmor/).

export type {
  AppArmorCapability,
  AppArmorConstrainedBy,
  AppArmorConstraint,
  AppArmorExecutable,
  AppArmorFilesystem,
  AppArmorMergeResult,
  AppArmorNetwork,
  AppArmorProfile,
  AppArmorProtocols,
  EffectiveAppArmorProfile,
  ExecutableList,
  FilesystemList,
  NetworkPermission,
  PathAccess,
  PathList,
} from './types.js';
export { EXECUTABLE_LISTS, FILESYSTEM_LISTS } from './types.js';
export { decodeAppArmor } from './decode.js';
export {
  capabilityProblem,
  LINUX_CAPABILITIES,
  MAX_ARTIFACT_PATHS,
  MAX_PATH_BYTES,
  MAX_TOTAL_PATH_BYTES,
  pathProblem,
  validateAppArmorArtifact,
  validateAppArmorArtifactBytes,
  validateRenderable,
} from './validate.js';
export { compileGlob, GlobError, MAX_ALTERNATIVES, narrowsStarStar, tryCompileGlob, type CompiledGlob } from './glob.js';
export {
  encodeAppArmorCanonical,
  explicitAppArmor,
  formatAppArmorConstraint,
  intersectAppArmor,
} from './intersect.js';
export { compareAppArmor, formatAppArmorChange, type AppArmorChange, type AppArmorComparison } from './compare.js';
export { appArmorProfileName, checkProfileName, renderAppArmor, RENDER_TEMPLATE_VERSION } from './render.js';
