// The node daemon configuration (docs/configuration.md): `/etc/spoke/config.yaml`, then flags on top.
// Strict like the policy: unknown keys and bad values are errors at `<file>:<line>: <key>`.
// Relative paths in the file are resolved against the file's directory; relative paths in
// overrides (flags) against the working directory.

import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseDuration } from '../core/duration.js';
import { OCI_ARCHITECTURES, ociArchitecture } from '../core/constants.js';
import { SpokeError } from '../core/errors.js';
import type { LogLevel } from '../core/runtime.js';
import { decodeText, parseHost, YamlSource, type Entry } from '../policy/index.js';

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
  /** Registry credentials file (docker config.json format); undefined = anonymous unless the kubelet sends auth. */
  readonly authFile: string | undefined;
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
const GC_KEYS = ['interval', 'minAge', 'maxStoreBytes'] as const;

export const DEFAULT_CONFIG_FILE = '/etc/spoke/config.yaml';
export const NODE_CONFIG_KEYS = [
  'listen',
  'upstream',
  'storeDir',
  'seccompRoot',
  'baseline',
  'baselines',
  'policy',
  'metrics',
  'logLevel',
  'annotations',
  'authFile',
  'runtimeDefault',
  'recordingKey',
  'pullTimeout',
  'gc',
] as const satisfies readonly (keyof NodeConfig)[];
export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];
/** CRI-O's default image pull timeout. */
export const DEFAULT_PULL_TIMEOUT_MS = 120_000;
const PULL_TIMEOUT_RANGE_MS = [1_000, 3_600_000] as const;

/** Keys of `baselines`: OCI architecture names (as in `spoke push --platform linux/ARCH`). */
const BASELINE_ARCHITECTURES: readonly string[] = Object.values(OCI_ARCHITECTURES);

const PATH_KEYS = ['listen', 'upstream', 'storeDir', 'seccompRoot', 'baseline', 'policy', 'authFile', 'runtimeDefault', 'recordingKey'] as const;

/**
 * The shipped baseline for an architecture, in the package's `policy/` (found from this module's
 * location): `seccomp-baseline-arm64.json` on arm64 (AArch64 and 32-bit ARM), else
 * `seccomp-baseline.json` (the x86 family). Two files because a seccomp filter lists the
 * architectures it admits and runtime-spec has no per-architecture map (policy/seccomp-baseline.md).
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
    authFile: undefined,
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
  const fromFile = text === undefined ? {} : parseNodeConfig(text, path);
  const arch = io.arch ?? ociArchitecture(process.arch);
  const merged: Record<string, unknown> = { ...defaultNodeConfig(arch), ...fromFile };
  const cwd = io.cwd ?? process.cwd();
  for (const [key, value] of Object.entries(overrides)) {
    if (value === undefined) continue;
    if (!(NODE_CONFIG_KEYS as readonly string[]).includes(key)) {
      throw new SpokeError('InvalidArgument', `unknown node config setting ${JSON.stringify(key)}`, { path: key }, { reason: 'CONFIG_INVALID' });
    }
    merged[key] = checkValue(key as keyof NodeConfig, value, (why) => {
      throw new SpokeError('InvalidArgument', `${key} (override): ${why}`, { path: key }, { reason: 'CONFIG_INVALID' });
    }, cwd);
  }
  const baselines = merged.baselines as NodeConfig['baselines'];
  if (baselines !== undefined && overrides.baseline === undefined) {
    const chosen = baselines[arch];
    if (chosen !== undefined) merged.baseline = chosen;
    // A per-architecture map without this node means a node the admin did not plan for: say so
    // rather than guess, unless `baseline` was written as the fallback.
    else if (fromFile.baseline === undefined) {
      throw new SpokeError('InvalidArgument', `${path}: baselines has no entry for this node's architecture ${arch}; add one, or set baseline for the architectures not listed`, { file: path, path: 'baselines', expected: arch }, { reason: 'CONFIG_INVALID' });
    }
  }
  return Object.freeze(merged as unknown as NodeConfig);
}

/** Parses the config file's text; returns only the keys it sets. Pure. */
export function parseNodeConfig(text: string, file: string): Partial<NodeConfig> {
  const { source: src, root } = YamlSource.parse(text, file, 'CONFIG_INVALID');
  if (root === undefined) return {};
  const m = src.map(root, '', NODE_CONFIG_KEYS);
  const out: Record<string, unknown> = {};
  for (const [key, e] of m.entries) {
    const k = key as keyof NodeConfig;
    const fail = (why: string): never => src.fail(e.value ?? e.keyNode, e.path, why);
    let raw: unknown;
    if (k === 'gc') {
      out.gc = parseGc(src, e);
      continue;
    }
    if (k === 'baselines') {
      const archMap = src.map(e.value, e.path, BASELINE_ARCHITECTURES, e.keyNode);
      const files: Record<string, string> = {};
      for (const [arch, a] of archMap.entries) {
        files[arch] = checkValue('baseline', src.string(a.value, a.path), (why) => src.fail(a.value ?? a.keyNode, a.path, why), dirname(resolve(file))) as string;
      }
      if (Object.keys(files).length === 0) fail('must name at least one architecture');
      out[k] = Object.freeze(files);
      continue;
    }
    if (k === 'annotations') raw = src.boolean(e.value, e.path);
    else if (k === 'metrics' && isEmptyScalar(e.value)) raw = '';
    else raw = src.string(e.value, e.path);
    out[k] = checkValue(k, raw, fail, dirname(resolve(file)));
  }
  return out;
}

function checkValue(key: keyof NodeConfig, value: unknown, fail: (why: string) => never, baseDir: string): unknown {
  if ((PATH_KEYS as readonly string[]).includes(key)) {
    if (typeof value !== 'string' || value === '') fail('must be a non-empty path');
    if (value.includes('\0')) fail('must not contain NUL');
    return isAbsolute(value) ? value : resolve(baseDir, value);
  }
  switch (key) {
    case 'metrics':
      if (typeof value !== 'string') fail('must be host:port or empty');
      if (value === '') return value;
      checkListenAddress(value, fail);
      return value;
    case 'logLevel':
      if (!(LOG_LEVELS as readonly unknown[]).includes(value)) fail(`must be one of ${LOG_LEVELS.join(', ')}`);
      return value;
    case 'annotations':
      if (typeof value !== 'boolean') fail('must be true or false');
      return value;
    case 'pullTimeout':
      return checkPullTimeout(value, fail);
    case 'gc':
      return value;
    case 'baselines': {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) fail('must map architectures to files');
      const files: Record<string, string> = {};
      for (const [arch, f] of Object.entries(value)) {
        if (!BASELINE_ARCHITECTURES.includes(arch)) fail(`unknown architecture ${JSON.stringify(arch.slice(0, 40))} (allowed: ${BASELINE_ARCHITECTURES.join(', ')})`);
        files[arch] = checkValue('baseline', f, fail, baseDir) as string;
      }
      return Object.freeze(files);
    }
    default:
      return fail('unknown setting');
  }
}

/** A duration (`2m`, `90s`, `1500ms`; a number is milliseconds) between 1 s and 1 h, as ms. */
function checkPullTimeout(value: unknown, fail: (why: string) => never): number {
  let ms: number | undefined;
  if (typeof value === 'number') ms = value;
  else if (typeof value === 'string') {
    ms = parseDuration(value);
  }
  const [min, max] = PULL_TIMEOUT_RANGE_MS;
  if (ms === undefined || !Number.isSafeInteger(ms) || ms < min || ms > max) fail('must be a duration between 1s and 60m, such as 2m or 90s');
  return ms;
}

/** `gc: {interval, minAge, maxStoreBytes}`; keys left out keep their defaults. */
function parseGc(src: YamlSource, e: Entry): GcConfig {
  const m = src.map(e.value, e.path, GC_KEYS, e.keyNode);
  const duration = (key: 'interval' | 'minAge', min: number): number | undefined => {
    const entry = m.get(key);
    if (entry === undefined) return undefined;
    const ms = parseDuration(src.string(entry.value, entry.path, { maxLength: 16 }));
    if (ms === undefined) src.fail(entry.value, entry.path, 'must be a duration such as 30s, 10m or 1h');
    if (ms < min) src.fail(entry.value, entry.path, `must be at least ${min / 1000}s`);
    return ms;
  };
  const max = m.get('maxStoreBytes');
  return Object.freeze({
    intervalMs: duration('interval', 1000) ?? DEFAULT_GC.intervalMs,
    minAgeMs: duration('minAge', 0) ?? DEFAULT_GC.minAgeMs,
    maxStoreBytes: max === undefined ? undefined : src.integer(max.value, max.path, 1, Number.MAX_SAFE_INTEGER),
  });
}

/** `host:port` with an explicit port: `127.0.0.1:9090`, `[::]:9090`, `localhost:9090`, `0.0.0.0:9090`. */
function checkListenAddress(value: string, fail: (why: string) => never): void {
  if (!/:\d+$/.test(value)) fail('must be host:port (for example 127.0.0.1:9090), or empty for no metrics');
  parseHost(value, fail);
}

function isEmptyScalar(node: unknown): boolean {
  if (node === undefined) return true;
  const value = typeof node === 'object' && node !== null && 'value' in node ? (node as { value: unknown }).value : undefined;
  return value === null || value === '';
}
