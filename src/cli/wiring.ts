// Wiring real I/O for commands: registry clients for publishers, and the node's pull pipeline
// (config → policy → store → registry → verifier) shared by `spoke pull` and `spoke shim`.

import { readFileSync } from 'node:fs';
import { loadNodeConfig, type NodeConfig } from '../config/node-config.js';
import { PolicyHolder } from '../config/policy-holder.js';
import { silentLogger, type Logger } from '../core/runtime.js';
import { PullPipeline, type PullObserver, type SignatureVerifier } from '../pull.js';
import type { Policy } from '../policy/types.js';
import { UndiciRegistryClient } from '../registry/client.js';
import { loadCredentials } from '../registry/credentials.js';
import type { CredentialSource, RegistryClient } from '../registry/types.js';
import { ProfileStore } from '../store/store.js';

/** Flags every publisher command takes (oras habits). */
export const publisherFlags = {
  'plain-http': { type: 'boolean' },
  'ca-file': { type: 'string' },
  'auth-file': { type: 'string' },
} as const;

export function publisherRegistry(values: { 'plain-http'?: boolean; 'ca-file'?: string; 'auth-file'?: string }): RegistryClient {
  return new UndiciRegistryClient({
    plainHttp: values['plain-http'] === true,
    ...(values['ca-file'] ? { caFile: readFileSync(values['ca-file']) } : {}),
    credentials: loadCredentials({ authFile: values['auth-file'] }),
  });
}

/** Flags of node-side commands; each overrides the node config's key of the same meaning. */
export const nodeFlags = {
  config: { type: 'string' },
  policy: { type: 'string' },
  store: { type: 'string' },
  'auth-file': { type: 'string' },
} as const;

export interface NodeFlagValues {
  config?: string;
  policy?: string;
  store?: string;
  'auth-file'?: string;
}

export async function nodeConfigOnly(values: NodeFlagValues): Promise<NodeConfig> {
  return loadNodeConfig(values.config, { policy: values.policy, storeDir: values.store, authFile: values['auth-file'] });
}

/**
 * The verifier adapter: the pipeline's view → src/verify's options. sigstore-js is loaded on the
 * first signed pull only, so unsigned rules and cached pulls do not pay for it at start-up.
 */
export const sigstoreVerifier: SignatureVerifier = async ({ registry, reference, manifestBytes, signers, credential, signal }) =>
  (await import('../verify/index.js')).verifyArtifactSignature({
    registry,
    repo: { registry: reference.registry, repository: reference.repository },
    digest: reference.digest,
    manifestBytes,
    signers,
    credential,
    signal,
    useMirrors: true,
  });

export interface NodeContext {
  config: NodeConfig;
  policy: PolicyHolder;
  store: ProfileStore;
  pipeline: PullPipeline;
  close(): Promise<void>;
}

/**
 * Builds the node pipeline. The registry client depends on the policy (mirrors, insecure
 * hosts), so one client is kept per policy hash and replaced when the policy changes.
 */
export function createNodeContext(config: NodeConfig, opts: { logger?: Logger; observer?: PullObserver; watchPolicy?: boolean } = {}): NodeContext {
  const logger = opts.logger ?? silentLogger;
  const policy = new PolicyHolder({ file: config.policy, watch: opts.watchPolicy ?? false, logger });
  const credentials: CredentialSource = config.authFile ? loadCredentials({ authFile: config.authFile }) : loadCredentials();
  const store = new ProfileStore({ root: config.storeDir });
  let current: { hash: string; client: RegistryClient } | undefined;
  const registryFor = (p: Policy): RegistryClient => {
    if (current?.hash !== p.hash) {
      const old = current?.client;
      current = { hash: p.hash, client: new UndiciRegistryClient({ insecure: p.insecure, mirrors: p.mirrors, credentials, logger }) };
      // In-flight requests on the old client finish; its idle connections close.
      void old?.close().catch(() => {});
    }
    return current.client;
  };
  const pipeline = new PullPipeline({ policy: () => policy.current(), registry: registryFor, store, verifier: sigstoreVerifier, logger, observer: opts.observer });
  return {
    config,
    policy,
    store,
    pipeline,
    close: async () => {
      policy.close();
      await current?.client.close();
    },
  };
}

export async function openNode(values: NodeFlagValues): Promise<NodeContext> {
  return createNodeContext(await nodeConfigOnly(values));
}
