// Wiring real I/O for commands: registry clients for publishers, and the node's pull pipeline
// (config → policy → store → registry → verifier) shared by `spoke pull` and `spoke shim`.

import { loadNodeConfig, type NodeConfig } from '../config/node-config.js';
import { PolicyHolder } from '../config/policy-holder.js';
import { silentLogger, type Logger } from '../core/runtime.js';
import { PullPipeline, type PullObserver, type RegistryLease, type SignatureVerifier } from '../pull.js';
import { decodeText } from '../policy/index.js';
import type { Policy } from '../policy/types.js';
import { UndiciRegistryClient } from '../registry/client.js';
import { checkedCaBundle, MAX_CA_FILE_BYTES, readCaBundle } from '../registry/options.js';
import { loadCredentials, nodeCredentials } from '../registry/credentials.js';
import type { CredentialSource, RegistryClient } from '../registry/types.js';
import { ProfileStore } from '../store/store.js';
import { UsageError } from './errors.js';
import { readInputFile, readNamedFile } from './read-file.js';
import { contentRules } from './version.js';

/** The policy's text as the shim reads it (decodeText: invalid UTF-8 refused, a BOM dropped), so lint, check, verify and the node agree. */
export function readPolicyFile(file: string): string {
  let bytes: Buffer;
  try {
    bytes = readNamedFile(file);
  } catch (e) {
    throw new UsageError(`cannot read policy ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return decodeText(bytes, file);
}

/** Flags every publisher command takes (oras habits). */
export const publisherFlags = {
  'plain-http': { type: 'boolean' },
  'ca-file': { type: 'string' },
  'auth-file': { type: 'string' },
} as const;

/**
 * A `--ca-file` bundle, read as a command reads its inputs (a FIFO too, bounded) and checked as the
 * node's caFile is: what the TLS layer is given is the certificates it was checked to hold.
 */
export function readCaFile(file: string): Buffer {
  return checkedCaBundle(readInputFile(file, '--ca-file', MAX_CA_FILE_BYTES), `--ca-file ${file}`, { file, path: '--ca-file' });
}

/**
 * A publisher's registry client. A command's requests all run under its `deadline`
 * (deadline.ts); the recording controller, which runs for good, gives none.
 */
export function publisherRegistry(values: { 'plain-http'?: boolean; 'ca-file'?: string; 'auth-file'?: string }, deadline?: AbortSignal): RegistryClient {
  return new UndiciRegistryClient({
    ...(deadline ? { signal: deadline } : {}),
    plainHttp: values['plain-http'] === true,
    ...(values['ca-file'] ? { caFile: readCaFile(values['ca-file']) } : {}),
    credentials: loadCredentials({ authFile: values['auth-file'] }),
  });
}

/** Flags of node-side commands; each overrides the node config's key of the same meaning. */
export const nodeFlags = {
  config: { type: 'string' },
  policy: { type: 'string' },
  store: { type: 'string' },
  'auth-file': { type: 'string' },
  'ca-file': { type: 'string' },
} as const;

export interface NodeFlagValues {
  config?: string;
  policy?: string;
  store?: string;
  'auth-file'?: string;
  'ca-file'?: string;
}

/** The node config with the node flags applied. */
export async function nodeConfigOnly(values: NodeFlagValues): Promise<NodeConfig> {
  return loadNodeConfig(values.config, { policy: values.policy, storeDir: values.store, authFile: values['auth-file'], caFile: values['ca-file'] }, { readFile: readNamedFile });
}

/** src/verify, once the first signed pull has loaded it. */
let verifyModule: typeof import('../verify/index.js') | undefined;

/**
 * The verifier adapter: the pipeline's view → src/verify's options. sigstore-js is loaded on the
 * first signed pull only, so unsigned rules and cached pulls do not pay for it at start-up. Once
 * loaded it is called at once: an `await import()` of a loaded module still resolves a turn
 * later, behind the manifest request the pipeline has just made, and signature discovery's first
 * request, the head of a keyed pull's longest chain, left ~0.15 ms after it (docs/benchmarks.md).
 */
export const sigstoreVerifier: SignatureVerifier = async ({ registry, reference, manifestBytes, signers, credential, signal }) =>
  (verifyModule ??= await import('../verify/index.js')).verifyArtifactSignature({
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
  /** The next pull leases a registry client made now (the CA changed); pulls in flight keep theirs. */
  renewRegistryClients(): void;
  close(): Promise<void>;
}

/**
 * Registry clients by policy: the client depends on the policy (mirrors, insecure hosts), so the
 * current one is replaced when the policy changes. A replaced client is closed only once the
 * last flight leasing it has ended: a reload never closes a client under an in-flight pull.
 */
export class RegistryClients {
  private current: { hash: string; entry: Entry } | undefined;
  private readonly retired = new Set<Entry>();

  constructor(private readonly make: (policy: Policy) => RegistryClient) {}

  lease(policy: Policy): RegistryLease {
    if (this.current?.hash !== policy.hash) {
      const old = this.current?.entry;
      this.current = { hash: policy.hash, entry: { client: this.make(policy), users: 0 } };
      if (old) this.retire(old);
    }
    const entry = this.current.entry;
    entry.users++;
    let released = false;
    return {
      client: entry.client,
      release: () => {
        if (released) return;
        released = true;
        entry.users--;
        if (this.retired.has(entry) && entry.users === 0) this.closeRetired(entry);
      },
    };
  }

  /** The next lease makes a client, as after a policy change; the current one is closed once its last lease ends. */
  renew(): void {
    const old = this.current?.entry;
    this.current = undefined;
    if (old) this.retire(old);
  }

  /** Closes every client, waiting for none: for shutdown. */
  async close(): Promise<void> {
    const all = [...this.retired].map((e) => e.client);
    if (this.current) all.push(this.current.entry.client);
    this.retired.clear();
    this.current = undefined;
    await Promise.allSettled(all.map((c) => c.close()));
  }

  private retire(entry: Entry): void {
    this.retired.add(entry);
    if (entry.users === 0) this.closeRetired(entry);
  }

  private closeRetired(entry: Entry): void {
    this.retired.delete(entry);
    void entry.client.close().catch(() => {});
  }
}

interface Entry {
  readonly client: RegistryClient;
  users: number;
}

/**
 * Builds the node pipeline (policy holder, store, registry clients per policy, verifier).
 * `store`: the caller's (the shim shares its own: one record cache for pulls and creates).
 * `policy`: a holder already loaded (the shim's, from its start), else one made here, not watched.
 * `credentials`: the caller's (the shim's, watched), else the config's auth file read here.
 * `ca`: the caller's CA bundle as it holds it now (the shim's, reloaded on SIGHUP), read by each
 * client made; else the config's caFile read here, once.
 */
export function createNodeContext(
  config: NodeConfig,
  opts: { logger?: Logger; observer?: PullObserver; store?: ProfileStore; policy?: PolicyHolder; credentials?: CredentialSource; ca?: () => Buffer | undefined } = {},
): NodeContext {
  const logger = opts.logger ?? silentLogger;
  // Added to Node's built-in roots for every registry and mirror (docs/configuration.md#registries-with-a-private-ca-proxies).
  const caBundle = opts.ca === undefined && config.caFile !== undefined ? readCaBundle(config.caFile) : undefined;
  const ca = opts.ca ?? (() => caBundle);
  const policy = opts.policy ?? new PolicyHolder({ file: config.policy, watch: false, logger });
  const credentials: CredentialSource = opts.credentials ?? nodeCredentials(config.authFile);
  // A CLI process does one thing: its flushes need not leave the thread (src/store/fsutil.ts).
  const store = opts.store ?? new ProfileStore({ root: config.storeDir, flushInline: () => true, contentRules: contentRules() });
  const clients = new RegistryClients((p) => {
    const caFile = ca();
    return new UndiciRegistryClient({ insecure: p.insecure, mirrors: p.mirrors, credentials, logger, ...(caFile ? { caFile } : {}) });
  });
  const pipeline = new PullPipeline({
    policy: () => policy.current(),
    registry: (p) => clients.lease(p),
    pullTimeoutMs: config.pullTimeout,
    store,
    verifier: sigstoreVerifier,
    logger,
    observer: opts.observer,
  });
  return {
    config,
    policy,
    store,
    pipeline,
    renewRegistryClients: () => clients.renew(),
    close: async () => {
      policy.close();
      await clients.close();
    },
  };
}

export async function openNode(values: NodeFlagValues): Promise<NodeContext> {
  return createNodeContext(await nodeConfigOnly(values));
}
