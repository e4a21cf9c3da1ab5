// Types for the two undici modules spoke loads directly (src/registry/http.ts says why). The
// package has no `exports` map, so these paths are reachable; undici is pinned to an exact
// version and test/unit/registry/undici-paths.test.ts fails the day they move.
declare module 'undici/lib/dispatcher/pool.js' {
  import type { Pool } from 'undici';
  const PoolClass: typeof Pool;
  export default PoolClass;
}

declare module 'undici/lib/api/api-request.js' {
  import type { Dispatcher } from 'undici';
  /** The request API, called with the dispatcher as `this` (undici's index attaches it to the prototype). */
  function request(this: Dispatcher, opts: Dispatcher.RequestOptions): Promise<Dispatcher.ResponseData>;
  export default request;
}
