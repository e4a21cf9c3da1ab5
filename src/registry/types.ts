// The contract of spoke's OCI distribution client (implemented in client.ts). Everything the
// pipeline, the verifier and the publisher need from a registry, and nothing else.

import type { Digest } from '../core/digest.js';

/** Credentials for one registry host. Never sent to any other host. */
export type Credential =
  | { kind: 'basic'; username: string; password: string }
  | { kind: 'identityToken'; token: string } // OAuth2 refresh token, exchanged at the token endpoint
  | { kind: 'registryToken'; token: string }; // bearer token used as is

/** Where a repository lives: `registry` is `host[:port]` as in core/reference.ts. */
export interface RepoLocator {
  readonly registry: string;
  readonly repository: string;
}

export interface FetchOptions {
  /**
   * Hard cap: more bytes than this (declared or streamed), nothing kept. For content named by a
   * digest that is the source's fault (RegistryUnavailable, SIZE_LIMIT: the next source is
   * tried); for a tag or an index, SecurityProfileInvalid.
   */
  maxBytes: number;
  /** Per-request credentials (CRI AuthConfig); used for this request only, for this registry only. */
  credential?: Credential;
  signal?: AbortSignal;
  /** Try the policy's mirrors for this registry first (pulls: yes; publishing: no). */
  useMirrors?: boolean;
  /**
   * Called each time a request for this content has been handed to its connection pool (again
   * for a retry or a redirect). undici writes it then, or in a check phase it has already asked
   * for, so work put in a check phase from here (setImmediate) runs once the request has gone out.
   */
  onDispatched?: () => void;
}

export interface FetchedManifest {
  bytes: Buffer;
  /** Content-Type the registry sent (may be absent); callers judge the body's own mediaType. */
  contentType: string | undefined;
  /** sha256 of `bytes`; when fetched by digest it equals the requested digest (checked). */
  digest: Digest;
  /** `host[:port]` that served it: the source registry or a mirror. */
  servedBy: string;
}

export interface FetchedBlob {
  bytes: Buffer;
  digest: Digest; // always equals the requested digest (checked while streaming)
  servedBy: string;
}

export interface RegistryClient {
  /** GET a manifest by digest (bytes hashed and compared) or by tag. `accept` lists media types. */
  getManifest(repo: RepoLocator, digestOrTag: string, accept: readonly string[], opts: FetchOptions): Promise<FetchedManifest>;
  /** GET a manifest that may be absent: resolves `undefined` on 404 (MANIFEST_UNKNOWN / NAME_UNKNOWN). */
  getManifestIfExists(repo: RepoLocator, digestOrTag: string, accept: readonly string[], opts: FetchOptions): Promise<FetchedManifest | undefined>;
  /**
   * GET a blob, streamed with the cap and hashed while streaming, nothing kept on failure. Bytes
   * that do not hash to the digest are the source's fault (RegistryUnavailable, DIGEST_MISMATCH:
   * the next source is tried); bytes that do, but whose length is not `expectedSize`, mean the
   * descriptor lies (SecurityProfileInvalid, SIZE_LIMIT).
   */
  getBlob(repo: RepoLocator, digest: Digest, opts: FetchOptions & { expectedSize?: number }): Promise<FetchedBlob>;
  /** OCI 1.1 referrers API. `undefined` when the registry does not support it (404): use the tag schema. */
  getReferrers(repo: RepoLocator, digest: Digest, opts: FetchOptions & { artifactType?: string }): Promise<Buffer | undefined>;
  /** HEAD a blob: true when present. */
  hasBlob(repo: RepoLocator, digest: Digest, opts?: { credential?: Credential; signal?: AbortSignal }): Promise<boolean>;
  /** Upload a blob (monolithic; chunked when `chunkSize` is given and the blob is larger). Skips if present. */
  putBlob(repo: RepoLocator, bytes: Uint8Array, opts?: { credential?: Credential; chunkSize?: number; signal?: AbortSignal }): Promise<Digest>;
  /** PUT a manifest under a tag or its digest; returns the digest of the bytes (checked against Docker-Content-Digest). */
  putManifest(repo: RepoLocator, tagOrDigest: string, bytes: Uint8Array, mediaType: string, opts?: { credential?: Credential; signal?: AbortSignal }): Promise<{ digest: Digest; subjectHeader: string | undefined }>;
  /** Close pooled connections. */
  close(): Promise<void>;
}

/**
 * Node or publisher credentials by registry host (`--auth-file`, `REGISTRY_AUTH_FILE`, docker
 * config; see credentials.ts). The client asks only for the host it is about to contact.
 */
export interface CredentialSource {
  /** Most specific entry for `registry` (`host[:port]`) and, when given, `repository`. */
  lookup(registry: string, repository?: string): Credential | undefined;
}
