// The registry layer's public surface: the client, its options and the credential sources.
export { UndiciRegistryClient } from './client.js';
export type { UndiciRegistryClientOptions } from './options.js';
export { DEFAULT_RETRIES, DEFAULT_TIMEOUT_MS } from './options.js';
export {
  credentialsFromEntries,
  emptyCredentials,
  loadAuthFile,
  loadCredentials,
  parseAuthFile,
  resolveAuthFile,
  type AuthFileLookup,
} from './credentials.js';
export type {
  Credential,
  CredentialSource,
  FetchedBlob,
  FetchedManifest,
  FetchOptions,
  RegistryClient,
  RepoLocator,
} from './types.js';
