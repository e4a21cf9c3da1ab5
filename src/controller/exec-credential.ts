// The ExecCredential protocol of a kubeconfig's exec credential plugin
// (client.authentication.k8s.io), as client-go reads it: the plugin's spec in the kubeconfig, and
// the credential it writes. kube-credentials.ts runs it (docs/binding.md#kubeconfig-and-credentials).

import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { Cluster, User } from '@kubernetes/client-node';
import { SpokeError } from '../core/errors.js';

export interface ExecSpec {
  /** The ExecCredential version the plugin speaks (EXEC_API_VERSIONS). */
  apiVersion: string;
  command: string;
  args: string[];
  /** What the plugin's environment has on top of the controller's: the kubeconfig's `env`, then KUBERNETES_EXEC_INFO. */
  env: Record<string, string>;
}

/** The versions client-go reads (v1alpha1 went in Kubernetes 1.24). */
const EXEC_API_VERSIONS: readonly unknown[] = ['client.authentication.k8s.io/v1', 'client.authentication.k8s.io/v1beta1'];
/** The interactiveModes of a plugin spoke can run, with no terminal: Always fails in client-go too. */
const NON_INTERACTIVE_MODES: readonly unknown[] = [undefined, null, 'Never', 'IfAvailable'];

/** The user's exec plugin as its kubeconfig has it (`exec`, or an exec auth-provider's), unchecked; undefined when it has none. */
export function execOf(user: User): unknown {
  return (user.exec ?? (user.authProvider as { config?: { exec?: unknown } } | undefined)?.config?.exec) ?? undefined;
}

/**
 * The user's exec plugin as client-node reads it (`exec`, or an auth-provider's `config.exec`),
 * from the kubeconfig `file` (none: not read from a file); malformed, or one client-go would not
 * run here, refused at load. `source` names the kubeconfig in errors, which quote none of it.
 */
export function execSpecOf(user: User, cluster: Cluster | null, source: string, file: string | undefined): ExecSpec {
  const exec = execOf(user) as Record<string, unknown> | undefined;
  const invalid = (what: string) => new SpokeError('InvalidArgument', `kubeconfig ${source}: user "${user.name}" has an exec plugin ${what}`, { file: source }, { reason: 'OPTION_INVALID' });
  const strings = (v: unknown) => Array.isArray(v) && v.every((s) => typeof s === 'string');
  const pairs = (v: unknown) => Array.isArray(v) && v.every((e) => typeof (e as { name?: unknown })?.name === 'string' && typeof (e as { value?: unknown }).value === 'string');
  if (typeof exec !== 'object' || typeof exec['command'] !== 'string' || exec['command'] === '' || !(exec['args'] === undefined || exec['args'] === null || strings(exec['args'])) || !(exec['env'] === undefined || exec['env'] === null || pairs(exec['env']))) {
    throw invalid('without a command, or with args or env that are not lists of strings and name/value pairs');
  }
  if (!EXEC_API_VERSIONS.includes(exec['apiVersion'])) throw invalid('whose apiVersion is not client.authentication.k8s.io/v1 or v1beta1');
  if (!NON_INTERACTIVE_MODES.includes(exec['interactiveMode'])) throw invalid('whose interactiveMode is neither Never nor IfAvailable: spoke runs it without a terminal');
  const provideClusterInfo = exec['provideClusterInfo'] ?? false;
  if (typeof provideClusterInfo !== 'boolean') throw invalid('whose provideClusterInfo is not true or false');
  const apiVersion = exec['apiVersion'] as string;
  const env = Object.fromEntries(((exec['env'] ?? []) as { name: string; value: string }[]).map((e) => [e.name, e.value]));
  // As client-go sets it (exec.go): an ExecCredential whose spec says the plugin is not
  // interactive, and has the cluster when the kubeconfig asks for it.
  const spec = { interactive: false, ...(provideClusterInfo && cluster ? { cluster: clusterInfo(cluster, invalid) } : {}) };
  env['KUBERNETES_EXEC_INFO'] = JSON.stringify({ apiVersion, kind: 'ExecCredential', spec });
  return { apiVersion, command: commandOf(exec['command'], file, invalid), args: (exec['args'] ?? []) as string[], env };
}

/**
 * The cluster as client-go gives it to a plugin (ConfigToExecCluster), members left out when
 * empty as it leaves them out; a CA file is given as its content. The cluster's `extensions`
 * (its `config`) are not: client-node does not read them.
 */
function clusterInfo(cluster: Cluster, invalid: (what: string) => SpokeError): Record<string, unknown> {
  let ca = cluster.caData;
  if (!ca && cluster.caFile) {
    try {
      ca = readFileSync(cluster.caFile).toString('base64');
    } catch (e) {
      throw invalid(`whose provideClusterInfo needs the cluster's certificate-authority file, which cannot be read (${(e as NodeJS.ErrnoException).code ?? 'unknown'})`);
    }
  }
  const info: Record<string, unknown> = { server: cluster.server, 'tls-server-name': cluster.tlsServerName, 'insecure-skip-tls-verify': cluster.skipTLSVerify || undefined, 'certificate-authority-data': ca, 'proxy-url': cluster.proxyUrl };
  return Object.fromEntries(Object.entries(info).filter(([, v]) => v !== undefined && v !== null && v !== ''));
}

/**
 * The plugin's command as client-go runs it (clientcmd ResolveLocalPaths): with a '/' and not
 * absolute, from the directory of the kubeconfig file that defined the user, not the process's
 * working directory; a bare name is looked up in PATH. Without a file to name it from, such a
 * command is refused: spoke would guess the directory (docs/binding.md#kubeconfig-and-credentials).
 */
function commandOf(command: string, file: string | undefined, invalid: (what: string) => SpokeError): string {
  if (!command.includes('/') || isAbsolute(command)) return command;
  if (file === undefined) throw invalid('whose command is a relative path, and no kubeconfig file to resolve it from');
  return resolve(dirname(file), command);
}

export interface Credential {
  token: string | undefined;
  cert: string | undefined;
  key: string | undefined;
  /** Epoch ms; Infinity without an expirationTimestamp: kept until the API server refuses it (kube-credentials.ts). */
  expiresAt: number;
}

/** A bearer token as a header value can carry it: printable ASCII, no spaces. */
const TOKEN_RE = /^[\x21-\x7e]+$/;
/** PEM text, which is all a client certificate or key may be written as in an ExecCredential. */
const PEM_RE = /^[\x20-\x7e\t\r\n]+$/;

/**
 * An ExecCredential of `apiVersion` (the one the kubeconfig names, as client-go decodes it) and its
 * status, as client-go reads it: a token, or a client certificate and key; else `failed(what is
 * wrong)` is thrown.
 */
export function credentialOf(out: string, apiVersion: string, failed: (what: string) => SpokeError): Credential {
  let doc: unknown;
  try {
    doc = JSON.parse(out);
  } catch {
    throw failed('wrote no JSON ExecCredential');
  }
  const head = doc as { apiVersion?: unknown; kind?: unknown } | null;
  if (head?.apiVersion !== apiVersion || head.kind !== 'ExecCredential') throw failed(`wrote no ExecCredential of the apiVersion its kubeconfig names (${apiVersion})`);
  const status = (doc as { status?: unknown }).status as Record<string, unknown> | undefined;
  if (typeof status !== 'object' || status === null) throw failed('wrote an ExecCredential without status');
  const str = (v: unknown) => (typeof v === 'string' && v !== '' ? v : undefined);
  const token = str(status['token']);
  const cert = str(status['clientCertificateData']);
  const key = str(status['clientKeyData']);
  if ((cert === undefined) !== (key === undefined) || (token === undefined && cert === undefined)) {
    throw failed('wrote an ExecCredential with neither a token nor both a client certificate and its key');
  }
  // A token goes into the Authorization header, whose value node-fetch refuses in a message that
  // quotes it (logged at every retry): refused here, quoting nothing (docs/security-model.md#bounded-everything).
  if (token !== undefined && !TOKEN_RE.test(token)) throw failed('wrote an ExecCredential whose token has characters a header cannot carry (only printable ASCII, no spaces)');
  if ((cert !== undefined && !PEM_RE.test(cert)) || (key !== undefined && !PEM_RE.test(key))) throw failed('wrote an ExecCredential whose client certificate or key is not PEM text (printable ASCII and line breaks)');
  const expires = str(status['expirationTimestamp']);
  const expiresAt = expires === undefined ? Infinity : rfc3339(expires);
  if (expiresAt === undefined) throw failed('wrote an ExecCredential whose expirationTimestamp is not an RFC 3339 time with a zone');
  return { token, cert, key, expiresAt };
}

const RFC3339_RE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,9})?(?:Z|[+-](\d{2}):(\d{2}))$/;

/**
 * `text` as epoch ms when it is an RFC 3339 time with a zone, as client-go reads a metav1.Time;
 * else undefined. Date.parse alone takes "01/01/2030", a time without a zone (as local time),
 * February 30 and 24:00.
 */
function rfc3339(text: string): number | undefined {
  const m = RFC3339_RE.exec(text);
  if (!m) return undefined;
  // The zone's groups are undefined for Z.
  const [year, month, day, hour, minute, second, zoneHour, zoneMinute] = m.slice(1).map((v) => Number(v ?? 0)) as [number, number, number, number, number, number, number, number];
  const date = new Date(Date.UTC(year, month - 1, day));
  if (date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day || hour > 23 || minute > 59 || second > 59 || zoneHour > 23 || zoneMinute > 59) return undefined;
  return Date.parse(text);
}
