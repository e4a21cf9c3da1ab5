// A plain HTTP server on 127.0.0.1 for one describe block: listening before its tests, closed
// (with its kept-alive connections) after them.

import { createServer, type RequestListener } from 'node:http';
import { after, before } from 'node:test';

/** `host()`: the server's `127.0.0.1:port`, once the block's tests run. */
export function localHttpServer(handler: RequestListener): { host: () => string } {
  const server = createServer(handler);
  let host = '';
  before(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    host = `127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });
  return { host: () => host };
}
