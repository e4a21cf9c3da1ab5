// A registry that is slow on demand: an HTTP proxy on 127.0.0.1 in front of a real
// docker-registry that can hold requests until the test releases them, trickle a response body a
// byte at a time, cut the connection midway through a body, or refuse a request (as a registry
// with rules of its own does). Everything else is forwarded as is.

import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/** Which requests a behaviour applies to (method and path, query included). */
export type Match = (req: { method: string; path: string }) => boolean;

export interface Hold {
  /** Resolves once `n` requests (default 1) have arrived and are being held. */
  arrived(n?: number): Promise<void>;
  /** Forwards every held request, and stops holding new ones. */
  release(): void;
}

export interface SlowProxy {
  /** `127.0.0.1:PORT`, to use as the registry host in references. */
  readonly host: string;
  /** Holds matching requests before forwarding them, until `release()`. */
  hold(match: Match): Hold;
  /** Sends matching response bodies one byte every `intervalMs` (headers at once). */
  trickle(match: Match, intervalMs?: number): void;
  /** Sends the headers and the first `bytes` of matching bodies, then closes the connection. */
  cut(match: Match, bytes: number): void;
  /** Answers matching requests with `status` and an OCI error body, forwarding nothing. */
  refuse(match: Match, status: number): void;
  /** Requests seen so far, in arrival order. */
  requests(): { method: string; path: string }[];
  /** Resolves once `n` matching requests (default 1) were given up by their client before the response ended. */
  abandoned(match: Match, n?: number): Promise<void>;
  close(): Promise<void>;
}

export const manifests: Match = (r) => r.method === 'GET' && r.path.includes('/manifests/');
export const blobs: Match = (r) => r.method === 'GET' && r.path.includes('/blobs/');

type BodyMode = { kind: 'trickle'; intervalMs: number } | { kind: 'cut'; bytes: number };

export async function startSlowProxy(upstreamPort: number): Promise<SlowProxy> {
  const seen: { method: string; path: string }[] = [];
  const holds: { match: Match; waiting: (() => void)[]; count: number; released: boolean }[] = [];
  const gone: { method: string; path: string }[] = [];
  // Anything a test may wait for (an arrival, a client giving up) wakes every waiter to re-check.
  let listeners: (() => void)[] = [];
  const notify = () => {
    const ls = listeners;
    listeners = [];
    for (const l of ls) l();
  };
  const until = async (ready: () => boolean) => {
    while (!ready()) await new Promise<void>((r) => listeners.push(r));
  };
  const bodies: { match: Match; mode: BodyMode }[] = [];
  const refusals: { match: Match; status: number }[] = [];
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();

  const forward = (req: IncomingMessage, res: ServerResponse, body: Buffer, mode: BodyMode | undefined) => {
    const up = httpRequest(
      { host: '127.0.0.1', port: upstreamPort, method: req.method, path: req.url, headers: req.headers },
      (upRes) => {
        if (!mode) {
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          upRes.pipe(res);
          return;
        }
        const chunks: Buffer[] = [];
        upRes.on('data', (c: Buffer) => chunks.push(c));
        upRes.on('end', () => {
          const all = Buffer.concat(chunks);
          res.writeHead(upRes.statusCode ?? 502, { ...upRes.headers, 'content-length': String(all.length) });
          if (mode.kind === 'cut') {
            res.write(all.subarray(0, mode.bytes), () => req.socket.destroy());
            return;
          }
          let i = 0;
          const t = setInterval(() => {
            if (res.destroyed || i >= all.length) {
              clearInterval(t);
              timers.delete(t);
              if (!res.destroyed) res.end();
              return;
            }
            res.write(all.subarray(i, i + 1));
            i++;
          }, mode.intervalMs);
          timers.add(t);
        });
      },
    );
    up.on('error', () => req.socket.destroy());
    up.end(body);
  };

  const server = createServer((req, res) => {
    const info = { method: req.method ?? 'GET', path: req.url ?? '/' };
    seen.push(info);
    res.on('close', () => {
      if (res.writableFinished) return;
      gone.push(info);
      notify();
    });
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const refusal = refusals.find((r) => r.match(info));
      if (refusal) {
        res.writeHead(refusal.status, { 'content-type': 'application/json' }).end(JSON.stringify({ errors: [{ code: 'DENIED', message: 'refused by the test proxy' }] }));
        return;
      }
      const mode = bodies.find((b) => b.match(info))?.mode;
      const go = () => forward(req, res, Buffer.concat(chunks), mode);
      const hold = holds.find((h) => !h.released && h.match(info));
      if (!hold) return go();
      hold.waiting.push(go);
      hold.count++;
      notify();
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;

  return {
    host: `127.0.0.1:${port}`,
    hold(match) {
      const h = { match, waiting: [] as (() => void)[], count: 0, released: false };
      holds.push(h);
      return {
        arrived: (n = 1) => until(() => h.count >= n),
        release: () => {
          h.released = true;
          for (const go of h.waiting.splice(0)) go();
        },
      };
    },
    trickle(match, intervalMs = 1000) {
      bodies.push({ match, mode: { kind: 'trickle', intervalMs } });
    },
    cut(match, bytes) {
      bodies.push({ match, mode: { kind: 'cut', bytes } });
    },
    refuse(match, status) {
      refusals.push({ match, status });
    },
    requests: () => seen.slice(),
    abandoned: (match, n = 1) => until(() => gone.filter(match).length >= n),
    close: async () => {
      for (const t of timers) clearInterval(t);
      for (const h of holds) h.released = true;
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
