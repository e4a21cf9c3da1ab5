// The webhook's HTTPS server (node:https, its own serving certificate read from files and
// re-read when they change, e.g. when cert-manager rotates them). Endpoints:
//   POST /mutate-pods        mutating webhook, pods CREATE and pods/ephemeralcontainers UPDATE
//                            (admission.k8s.io/v1, JSONPatch)
//   POST /validate-bindings  validating webhook for ProfileBinding CREATE/UPDATE (a warning where
//                            the namespace has not opted in)
//   POST /validate-results   validating webhook for ProfileRecordingResult CREATE (the
//                            requester is the recorders' ServiceAccount, and the node that
//                            reports is the node its token is bound to)
//   POST /validate-pod-updates  validating webhook for pods UPDATE: recording annotations are
//                            never added or changed after creation
//   GET  /healthz            process alive
//   GET  /readyz             200 once the binding and namespace sources have synced (Service
//                            endpoints wait for them; the recording source is not waited for: an
//                            unmarked pod is never looser)
// Which namespaces reach /mutate-pods is decided by the MutatingWebhookConfiguration's
// namespaceSelector (`spoke.dev/binding: enabled`, deploy/controller/webhooks.yaml), not here.
// With a client CA, only reviews over a connection whose client certificate verifies against
// `clientCaFile` (the API server's) are read: any other caller is answered 403 before its body is
// read, since an answer tells which bindings a namespace has and what they reference. Those
// reviews record binding status (`onApplied`) and mark pods for recording (a signed proof)
// (docs/binding.md, docs/recording.md). Without a client CA anyone who reaches the port gets an
// answer, the controller takes status from its pod informer instead, and marks no pod.

import { readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { BadReview, RECORDER_SERVICE_ACCOUNT, reviewBinding, reviewPod, reviewPodUpdate, reviewResult, serviceAccountUser, type PodMatch } from './admission.js';
import type { BindingMode } from './binding.js';
import type { BindingSource, NamespaceSource, RecordingSource } from './source.js';

const REVIEW_PATHS = new Set(['/mutate-pods', '/validate-bindings', '/validate-results', '/validate-pod-updates']);

/** The API server caps request bodies at 3 MiB; a pod CREATE review stays well below 4 MiB. */
export const MAX_REVIEW_BYTES = 4 * 1024 * 1024;
/**
 * Bytes of review bodies held at once, at most: a body that would pass it is answered 503 and
 * dropped. Anyone who reaches the port may post, and six 4 MiB reviews at once took the
 * controller to 1.6 GB; reviews are computed one at a time, so this bounds what waits.
 */
export const MAX_BODY_BYTES_HELD = 16 * 1024 * 1024;
/** Connections at once (the API server keeps a few open); more are closed as they come. */
export const MAX_CONNECTIONS = 64;
/**
 * A connection holds one of MAX_CONNECTIONS slots: one that has not finished its TLS handshake
 * within this is closed (Node's default is 120 s), and request timeouts are checked every second
 * (default 30 s), so silent connections cannot keep the API server out for long.
 */
const HANDSHAKE_TIMEOUT_MS = 5_000;
const TIMEOUT_CHECK_INTERVAL_MS = 1_000;
/** A review uid is logged at most this long: the body is anyone's (the API server's are 36). */
const MAX_LOGGED_UID_CHARS = 64;

export interface WebhookOptions {
  certFile: string;
  keyFile: string;
  source: BindingSource;
  /** ProfileRecordings (the recording controller's cache): selected pods are marked for recording. */
  recordings?: RecordingSource;
  /** The cluster's recording key (--recording-key): markings are signed with it; without it none is made. */
  recordingKey?: Buffer;
  /** Lifetime of a marking's proof (--recording-proof-ttl); default 1 h. */
  proofTtlSeconds?: number;
  /** Unix milliseconds, for proof expiry; default Date.now. */
  now?: () => number;
  host?: string;
  port?: number;
  mode?: BindingMode;
  /** Status tracking: called only for reviews from a client whose certificate verifies against `clientCaFile`. */
  onApplied?: (m: PodMatch) => void;
  /** PEM CA bundle that signs the API server's client certificate (its AdmissionConfiguration kubeconfig). */
  clientCaFile?: string;
  /** With `clientCaFile`: the subject CN that certificate must carry (where the CA signs others too, e.g. kubelets). */
  clientName?: string;
  /** Namespace labels for the Pod Security enforce level (binding.ts rule 8). */
  namespaces?: NamespaceSource;
  /** The cluster's default Pod Security enforce level (default `privileged`). */
  podSecurityDefault?: string;
  /** The only username that may create ProfileRecordingResults (--recorder-service-account); default the shipped recorders' ServiceAccount. */
  recorderUser?: string;
  log?: (event: Record<string, unknown>) => void;
  /** How often to check the certificate files for changes; 0 disables. Default 60 s. */
  certCheckIntervalMs?: number;
}

export class WebhookServer {
  private readonly server: Server;
  private certStamp = '';
  private timer: NodeJS.Timeout | undefined;
  /** Bytes of review bodies read and not yet parsed (MAX_BODY_BYTES_HELD). */
  private readonly held = { bytes: 0, limit: MAX_BODY_BYTES_HELD };

  constructor(private readonly opts: WebhookOptions) {
    // Client certificates are asked for, not required: probes carry none (a review without one is
    // refused in handle).
    const requestCert = opts.clientCaFile !== undefined;
    this.server = createServer(
      { ...this.readCertificate(), minVersion: 'TLSv1.2', requestCert, rejectUnauthorized: false, handshakeTimeout: HANDSHAKE_TIMEOUT_MS, connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS },
      (req, res) => void this.handle(req, res),
    );
    this.server.requestTimeout = 10_000;
    this.server.headersTimeout = 5_000;
    this.server.maxConnections = MAX_CONNECTIONS;
  }

  /** Bytes of review bodies held now (read and not yet parsed). */
  get heldBodyBytes(): number {
    return this.held.bytes;
  }

  private files(): string[] {
    return [this.opts.certFile, this.opts.keyFile, ...(this.opts.clientCaFile === undefined ? [] : [this.opts.clientCaFile])];
  }

  private stamp(): string {
    return this.files()
      .map((f) => {
        const st = statSync(f);
        return `${st.mtimeMs}:${st.size}`;
      })
      .join(':');
  }

  private readCertificate(): { cert: Buffer; key: Buffer; ca?: Buffer } {
    this.certStamp = this.stamp();
    const ca = this.opts.clientCaFile === undefined ? {} : { ca: readFileSync(this.opts.clientCaFile) };
    return { cert: readFileSync(this.opts.certFile), key: readFileSync(this.opts.keyFile), ...ca };
  }

  /** Re-reads the certificate and key if the files changed; keeps the old pair on any error. */
  reloadCertificate(): boolean {
    try {
      if (this.stamp() === this.certStamp) return false;
      this.server.setSecureContext({ ...this.readCertificate(), minVersion: 'TLSv1.2' });
      this.opts.log?.({ msg: 'serving certificate reloaded' });
      return true;
    } catch (e) {
      this.opts.log?.({ msg: 'serving certificate reload failed; keeping the previous one', error: (e as Error).message });
      return false;
    }
  }

  async listen(): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port ?? 9443, this.opts.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    const interval = this.opts.certCheckIntervalMs ?? 60_000;
    if (interval > 0) {
      this.timer = setInterval(() => this.reloadCertificate(), interval);
      this.timer.unref();
    }
    return this.server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  /** Whether the connection's client certificate verified against the client CA (and names `clientName`). */
  private authenticated(socket: TLSSocket): boolean {
    if (this.opts.clientCaFile === undefined || socket.authorized !== true) return false;
    return this.opts.clientName === undefined || socket.getPeerCertificate().subject?.CN === this.opts.clientName;
  }

  private send(res: ServerResponse, code: number, body: unknown): void {
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    res.writeHead(code, { 'content-type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    try {
      if (req.method === 'GET' && path === '/healthz') return this.send(res, 200, 'ok');
      if (req.method === 'GET' && path === '/readyz') {
        if (!this.opts.source.synced()) return this.send(res, 503, 'binding cache not synced');
        return this.opts.namespaces?.synced() === false ? this.send(res, 503, 'namespace cache not synced') : this.send(res, 200, 'ok');
      }
      if (!REVIEW_PATHS.has(path ?? '')) return this.send(res, 404, 'not found');
      if (req.method !== 'POST') return this.send(res, 405, 'POST only');
      const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim();
      if (type !== 'application/json') return this.send(res, 415, 'content-type must be application/json');
      // Known before the body is read: the certificate came with the handshake.
      const authenticated = this.authenticated(req.socket as TLSSocket);
      if (this.opts.clientCaFile !== undefined && !authenticated) {
        res.shouldKeepAlive = false;
        return this.send(res, 403, "a review needs the API server's client certificate");
      }
      const budget = this.held;
      const body = await readBody(req, MAX_REVIEW_BYTES, budget);
      let doc: unknown;
      try {
        doc = JSON.parse(body.toString('utf8'));
      } catch {
        throw new BadReview('body is not valid JSON');
      } finally {
        budget.bytes -= body.length;
      }
      const started = process.hrtime.bigint();
      const { mode, recordings, recordingKey, proofTtlSeconds, now, namespaces, podSecurityDefault } = this.opts;
      const out =
        path === '/mutate-pods'
          ? reviewPod(doc, this.opts.source, {
              mode,
              onApplied: authenticated ? this.opts.onApplied : undefined,
              // Recording proofs only for the API server: anyone else could mark any pod of a
              // namespace with a recording, opted in or not, for the logging profile.
              recordings: authenticated ? recordings : undefined,
              recordingKey,
              proofTtlSeconds,
              now,
              namespaces,
              podSecurityDefault,
            })
          : path === '/validate-results'
            ? reviewResult(doc, this.opts.recorderUser ?? serviceAccountUser(RECORDER_SERVICE_ACCOUNT))
            : path === '/validate-pod-updates'
              ? reviewPodUpdate(doc, this.opts.source)
              : reviewBinding(doc, namespaces);
      const r = out.response;
      this.opts.log?.({
        msg: 'admission',
        path,
        uid: r.uid.slice(0, MAX_LOGGED_UID_CHARS),
        allowed: r.allowed,
        patched: r.patch !== undefined,
        authenticated,
        warnings: r.warnings?.length ?? 0,
        ...(r.allowed ? {} : { reason: r.status?.message }),
        micros: Number((process.hrtime.bigint() - started) / 1000n),
      });
      this.send(res, 200, out);
    } catch (e) {
      if (e instanceof BadReview) return this.send(res, 400, e.message);
      if (e instanceof BodyTooLarge) return this.send(res, 413, e.message);
      if (e instanceof Busy) {
        res.setHeader('retry-after', '1');
        res.shouldKeepAlive = false;
        return this.send(res, 503, e.message);
      }
      this.opts.log?.({ msg: 'webhook handler failed', error: (e as Error).message });
      this.send(res, 500, 'internal error');
    }
  }
}

class BodyTooLarge extends Error {}
class Busy extends Error {}

/**
 * The request body, at most `max` bytes, counted in `held` as it arrives (the caller subtracts
 * it once done); Busy when `held` would pass its limit (what was counted is returned).
 */
function readBody(req: IncomingMessage, max: number, held: { bytes: number; limit: number }): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? NaN);
    if (declared > max) {
      req.resume();
      return reject(new BodyTooLarge(`body larger than ${max} bytes`));
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const stop = (e: Error) => {
      if (settled) return;
      settled = true;
      held.bytes -= size;
      req.removeAllListeners('data');
      req.resume();
      reject(e);
    };
    req.on('data', (chunk: Buffer) => {
      if (size + chunk.length > max) return stop(new BodyTooLarge(`body larger than ${max} bytes`));
      if (held.bytes + chunk.length > held.limit) return stop(new Busy('too many reviews at once; retry'));
      size += chunk.length;
      held.bytes += chunk.length;
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (settled) return;
      settled = true;
      resolve(Buffer.concat(chunks));
    });
    req.on('error', (e) => stop(e));
  });
}
