// Node config and policy files (docs/configuration.md): strict loading with line numbers, last-good retention.

export { loadNodeConfig, parseNodeConfig, defaultNodeConfig, defaultBaselinePath, DEFAULT_CONFIG_FILE, LOG_LEVELS } from './node-config.js';
export type { NodeConfig, LoadNodeConfigIo } from './node-config.js';
export { PolicyHolder } from './policy-holder.js';
export type { PolicyHolderOptions, ReloadResult } from './policy-holder.js';
