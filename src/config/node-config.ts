// The node daemon configuration (docs/configuration.md): `/etc/spoke/config.yaml`, then flags on top.
// Strict like the policy: unknown keys and bad values are errors at `<file>:<line>: <key>`. The
// shape (keys, types, enums, patterns) is policy/node-config.schema.json's, checked by the
// validator generated from it; this module checks what it cannot say. Flags go through both too.
// Relative paths in the file are resolved against the file's directory; relative paths in
// overrides (flags) against the working directory.

import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseDuration } from '../core/duration.js';
import { DEFAULT_RUNTIME_HANDLERS, ociArchitecture } from '../core/constants.js';
import { SpokeError } from '../core/errors.js';
import type { LogLevel } from '../core/runtime.js';
import { decodeText, parseHost, schemaProblem, YamlFile, type SchemaValidator, type Segment } from '../policy/index.js';
import { nodeConfig } from './schema-generated.js';

export interface NodeConfig {
  /** Unix socket the shim serves CRI on (the kubelet's `--container-runtime-endpoint`). */
  readonly listen: string;
  /** The runtime's own CRI socket (containerd or CRI-O). */
  readonly upstream: string;
  /** Content-addressed store of pulled artifacts. */
  readonly storeDir: string;
  /** The kubelet's seccomp root; effective profiles are written under `<root>/spoke/`. */
  readonly seccompRoot: string;
  /**
   * Node baseline seccomp profile intersected into every OCI profile (docs/baseline.md): the one this node
   * uses, after `baselines` was consulted (docs/multi-arch.md).
   */
  readonly baseline: string;
  /**
   * Per-architecture baselines by OCI architecture name (`amd64`, `arm64`, ...): the entry for this
   * node's architecture wins over `baseline` in the file; the `--baseline` flag wins over both.
   */
  readonly baselines: Readonly<Record<string, string>> | undefined;
  /** The node admin policy file (docs/configuration.md). */
  readonly policy: string;
  /** Prometheus listen address `host:port`; '' = metrics off. */
  readonly metrics: string;
  readonly logLevel: LogLevel;
  /** Whether to honour profile references given as pod annotations (off by default). */
  readonly annotations: boolean;
  /** Runtime handlers that enforce the profiles spoke applies (docs/shim.md#runtime-handlers). */
  readonly runtimeHandlers: readonly string[];
  /** Registry credentials file (docker config.json format); undefined = anonymous unless the kubelet sends auth. */
  readonly authFile: string | undefined;
  /**
   * A CA bundle (PEM) trusted for every registry and mirror the node pulls from, in addition to
   * Node's built-in roots (registry/options.ts); undefined = the built-in roots alone.
   */
  readonly caFile: string | undefined;
  /**
   * A pinned runtime default seccomp profile (what a RuntimeDefault base means); undefined = read
   * live from the runtime (src/cri/runtime-default.ts).
   */
  readonly runtimeDefault: string | undefined;
  /** The cluster's recording key file, shared with the controller (docs/recording.md); needed by `--recording`. */
  readonly recordingKey: string | undefined;
  /** Total time of one profile fetch, in ms (the file says `2m`, `90s`, `500ms`); default 2 min as CRI-O. */
  readonly pullTimeout: number;
  /** The shim's automatic garbage collection (docs/gc.md). */
  readonly gc: GcConfig;
}

export interface GcConfig {
  /** Time between runs. */
  readonly intervalMs: number;
  /** Unused profiles and effective files are removed once unused for this long. */
  readonly minAgeMs: number;
  /** Above this many profile bytes, unused profiles go least recently used first; undefined = no cap. */
  readonly maxStoreBytes: number | undefined;
}

/** CRI-O's defaults for its own profile garbage collection. */
export const DEFAULT_GC: GcConfig = Object.freeze({ intervalMs: 10 * 60_000, minAgeMs: 60 * 60_000, maxStoreBytes: undefined });

export const DEFAULT_CONFIG_FILE = '/etc/spoke/config.yaml';
/** For the shim's --log-level usage message; the file's `logLevel` is checked by the schema. */
export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];
/** CRI-O's default image pull timeout. */
export const DEFAULT_PULL_TIMEOUT_MS = 120_000;
/** What pullTimeout (and `spoke verify --timeout`) may be: 1 s to 1 h. */
export const PULL_TIMEOUT_RANGE_MS = [1_000, 3_600_000] as const;

const PATH_KEYS: readonly string[] = ['listen', 'upstream', 'storeDir', 'seccompRoot', 'baseline', 'policy', 'authFile', 'caFile', 'runtimeDefault', 'recordingKey'];

const validateConfig = nodeConfig as unknown as SchemaValidator;

/** Settings as the file writes them, which the schema has checked: strings, a boolean, gc and baselines mappings. */
type ConfigYaml = Record<string, unknown> & {
  baselines?: Record<string, string>;
  metrics?: string | null;
  gc?: { interval?: string; minAge?: string; maxStoreBytes?: number };
};

/**
 * The shipped baseline for an architecture, in the package's `policy/` (found from this module's
 * location): `seccomp-baseline-arm64.json` on arm64 (AArch64 and 32-bit ARM), else
 * `seccomp-baseline.json` (the x86 family). Two files because a seccomp filter lists the
 * architectures it admits and runtime-spec has no per-architecture map (docs/baseline.md).
 */
export function defaultBaselinePath(arch: string = ociArchitecture(process.arch)): string {
  const name = arch === 'arm64' ? 'seccomp-baseline-arm64.json' : 'seccomp-baseline.json';
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, 'package.json'))) return join(dir, 'policy', name);
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  // dist/src/config → package root
  return fileURLToPath(new URL(`../../../policy/${name}`, import.meta.url));
}

/** Defaults; `arch` (this node's OCI architecture) picks the shipped baseline. */
export function defaultNodeConfig(arch?: string): NodeConfig {
  return {
    listen: '/run/spoke/spoke.sock',
    upstream: '/run/containerd/containerd.sock',
    storeDir: '/var/lib/spoke',
    seccompRoot: '/var/lib/kubelet/seccomp',
    baseline: defaultBaselinePath(arch),
    baselines: undefined,
    policy: '/etc/spoke/policy.yaml',
    metrics: '',
    logLevel: 'info',
    annotations: false,
    runtimeHandlers: DEFAULT_RUNTIME_HANDLERS,
    authFile: undefined,
    caFile: undefined,
    runtimeDefault: undefined,
    recordingKey: undefined,
    pullTimeout: DEFAULT_PULL_TIMEOUT_MS,
    gc: DEFAULT_GC,
  };
}

export interface LoadNodeConfigIo {
  readFile?: (path: string) => Buffer;
  /** This node's OCI architecture, which picks the `baselines` entry; default from process.arch. */
  arch?: string;
  /** Where relative override paths are resolved; default process.cwd(). */
  cwd?: string;
}

/**
 * Reads the config file (`file` undefined: the default file, whose absence means defaults;
 * a named file that is missing is an error), then applies `overrides` (undefined values are
 * ignored). The result is frozen.
 */
export function loadNodeConfig(file?: string, overrides: Partial<NodeConfig> = {}, io: LoadNodeConfigIo = {}): NodeConfig {
  const readFile = io.readFile ?? ((p: string) => readFileSync(p));
  const path = file ?? DEFAULT_CONFIG_FILE;
  let text: string | undefined;
  try {
    text = decodeText(readFile(path), path, 'CONFIG_INVALID');
  } catch (e) {
    if (e instanceof SpokeError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (!(file === undefined && code === 'ENOENT')) {
      throw new SpokeError('InvalidArgument', `${path}: cannot read the node config${code ? ` (${code})` : ''}`, { file: path }, { cause: e, reason: 'FILE_UNREADABLE' });
    }
  }
  const read = text === undefined ? undefined : readNodeConfig(text, path);
  const fromFile = read?.values ?? {};
  /** `file:line: key: why`, at the key in the file (line 1 when the file does not set it). */
  const fileError = (key: string, why: string, context: Record<string, string> = {}): SpokeError => {
    const line = read !== undefined && key in fromFile ? read.doc.lineOf([key], { atKey: true }) : 1;
    return new SpokeError('InvalidArgument', `${path}:${line}: ${key}: ${why}`, { ...context, file: path, line, path: key }, { reason: 'CONFIG_INVALID' });
  };
  const arch = io.arch ?? ociArchitecture(process.arch);
  const merged: Record<string, unknown> = { ...defaultNodeConfig(arch), ...fromFile };
  const cwd = io.cwd ?? process.cwd();
  for (const [key, value] of Object.entries(overrides)) {
    if (value === undefined) continue;
    const fail = (why: string): never => {
      throw new SpokeError('InvalidArgument', `${key} (override): ${why}`, { path: key }, { reason: 'CONFIG_INVALID' });
    };
    // A flag is checked as the same setting written in the file (a timeout in ms as `<n>ms`).
    const written = { [key]: key === 'pullTimeout' && typeof value === 'number' ? `${value}ms` : value };
    const problem = schemaProblem(validateConfig, written);
    if (problem !== undefined) fail(problem.what);
    Object.assign(merged, settle(written, cwd, (_path, why) => fail(why)));
  }
  const baselines = merged.baselines as NodeConfig['baselines'];
  if (baselines !== undefined && overrides.baseline === undefined) {
    const chosen = baselines[arch];
    if (chosen !== undefined) merged.baseline = chosen;
    // A per-architecture map without this node means a node the admin did not plan for: say so
    // rather than guess, unless `baseline` was written as the fallback.
    else if (fromFile.baseline === undefined) {
      throw fileError('baselines', `no entry for this node's architecture ${arch}; add one, or set baseline for the architectures not listed`, { expected: arch });
    }
  }
  // Pods name Localhost profiles by paths under the seccomp root: a store there would offer its
  // raw blobs (never merged with the baseline) as profiles (docs/configuration.md). Compared as
  // the kernel reaches them, through any symlink on the way.
  const storeDir = realPathOf(resolve(merged.storeDir as string));
  const seccompRoot = realPathOf(resolve(merged.seccompRoot as string));
  if (storeDir === seccompRoot || storeDir.startsWith(`${seccompRoot}/`)) {
    const why = `${storeDir} lies inside seccompRoot ${seccompRoot}, where pods could name the store's unmerged blobs as Localhost profiles; put the store outside it`;
    if (overrides.storeDir !== undefined || overrides.seccompRoot !== undefined) {
      // The flag at fault: the store it names, or the root it moved over the store.
      const flag = overrides.storeDir === undefined ? 'seccompRoot' : 'storeDir';
      throw new SpokeError('InvalidArgument', `${flag} (override): ${why}`, { file: path, path: flag }, { reason: 'CONFIG_INVALID' });
    }
    // The file's setting at fault: the store it names, or the root it moved over the default store.
    throw fileError(fromFile.storeDir === undefined && fromFile.seccompRoot !== undefined ? 'seccompRoot' : 'storeDir', why);
  }
  return Object.freeze(merged as unknown as NodeConfig);
}

/** `path` (absolute) through the real path of its nearest existing ancestor: the rest is made later. */
function realPathOf(path: string): string {
  for (let existing = path; ; existing = dirname(existing)) {
    try {
      return join(realpathSync(existing), relative(existing, path));
    } catch {
      if (dirname(existing) === existing) return path;
    }
  }
}

/** Parses the config file's text; returns only the keys it sets. Pure. */
export function parseNodeConfig(text: string, file: string): Partial<NodeConfig> {
  return readNodeConfig(text, file).values;
}

/** The keys the file sets, and the parsed file, which tells the line of each. */
function readNodeConfig(text: string, file: string): { values: Partial<NodeConfig>; doc: YamlFile } {
  const doc = YamlFile.load(text, file, 'CONFIG_INVALID', validateConfig, true);
  if (doc.data === undefined) return { values: {}, doc };
  return { values: settle(doc.data as ConfigYaml, dirname(resolve(file)), (path, why) => doc.fail(path, why)), doc };
}

/**
 * Settings the schema admitted → NodeConfig values: what a schema cannot say is checked here
 * (durations in range, a listen address's host and port); relative paths resolve against `baseDir`.
 */
function settle(data: ConfigYaml, baseDir: string, fail: (path: Segment[], why: string) => never): Partial<NodeConfig> {
  const out: Record<string, unknown> = {};
  const path = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  for (const [key, value] of Object.entries(data)) {
    if (PATH_KEYS.includes(key)) out[key] = path(value as string);
    else if (key === 'baselines') out[key] = Object.freeze(Object.fromEntries(Object.entries(data.baselines!).map(([arch, p]) => [arch, path(p)])));
    else if (key === 'metrics') out[key] = data.metrics ? listenAddress(data.metrics, (why) => fail([key], why)) : '';
    else if (key === 'pullTimeout') out[key] = pullTimeout(value as string, (why) => fail([key], why));
    else if (key === 'gc') out[key] = gcConfig(data.gc!, (k, why) => fail([key, k], why));
    else out[key] = value;
  }
  return out;
}

/** A duration between 1 s and 1 h, as ms. */
function pullTimeout(value: string, fail: (why: string) => never): number {
  const ms = parseDuration(value);
  const [min, max] = PULL_TIMEOUT_RANGE_MS;
  if (ms === undefined || !Number.isSafeInteger(ms) || ms < min || ms > max) fail('must be a duration between 1s and 60m, such as 2m or 90s');
  return ms;
}

/** `gc: {interval, minAge, maxStoreBytes}`; keys left out keep their defaults. */
function gcConfig(gc: NonNullable<ConfigYaml['gc']>, fail: (key: string, why: string) => never): GcConfig {
  const duration = (key: 'interval' | 'minAge', min: number, max = Number.MAX_SAFE_INTEGER): number | undefined => {
    const text = gc[key];
    if (text === undefined) return undefined;
    const ms = parseDuration(text);
    if (ms === undefined) fail(key, 'must be a duration such as 30s, 10m or 1h');
    if (ms < min) fail(key, `must be at least ${min / 1000}s`);
    if (ms > max) fail(key, `must be at most ${max / 3_600_000}h`);
    return ms;
  };
  return Object.freeze({
    // At most a day: a timer cannot wait longer than 2^31 - 1 ms (~24.8 days), and fires at once beyond.
    intervalMs: duration('interval', 1000, 24 * 3_600_000) ?? DEFAULT_GC.intervalMs,
    minAgeMs: duration('minAge', 0) ?? DEFAULT_GC.minAgeMs,
    maxStoreBytes: gc.maxStoreBytes,
  });
}

/** `host:port` (the schema's shape) whose host and port parse: `127.0.0.1:9090`, `[::]:9090`, `localhost:9090`. */
function listenAddress(value: string, fail: (why: string) => never): string {
  parseHost(value, fail);
  return value;
}
