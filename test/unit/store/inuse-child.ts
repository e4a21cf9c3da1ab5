// Child process for the in-use journal tests. Modes:
//   append ROOT NAME N   N times: mark `container:NAME-i` in use (digest A), print "done"
//   compact ROOT N       N compactions (a rebuild that replaces no holder), print "done"
//   read ROOT N          N reads; exit 3 when `container:anchor` is missing from one, print "done"
import { ProfileStore } from '../../../src/store/store.js';

const A = `sha256:${'a'.repeat(64)}` as const;
const [mode, root, a, b] = process.argv.slice(2) as [string, string, string, string?];
const store = new ProfileStore({ root });
// Each step yields to the event loop, so the processes' steps interleave as the shim's and gc's do.
const turn = () => new Promise((r) => setImmediate(r));
if (mode === 'append') {
  for (let i = 0; i < Number(b); i++, await turn()) await store.markInUse(A, `container:${a}-${i}`);
} else if (mode === 'compact') {
  for (let i = 0; i < Number(a); i++, await turn()) await store.replaceInUse(new Map(), ['none:']);
} else {
  for (let i = 0; i < Number(a); i++, await turn()) if (!(await store.inUseHolders(A)).includes('container:anchor')) process.exit(3);
}
process.stdout.write('done\n');
