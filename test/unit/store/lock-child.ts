// Child process for the lock tests. Modes:
//   hold LOCK            take the lock, print "held", keep it until killed
//   work LOCK MARKER N   N times: take the lock, create MARKER exclusively (a second holder would
//                        find it), yield, remove it; exit 3 on a double hold, print "done"
import { open, unlink } from 'node:fs/promises';
import { withFileLock } from '../../../src/store/lock.js';

const [mode, lockPath, marker, n] = process.argv.slice(2) as [string, string, string?, string?];
if (mode === 'hold') {
  await withFileLock(lockPath, async () => {
    process.stdout.write('held\n');
    await new Promise(() => setInterval(() => undefined, 60_000));
  });
} else {
  for (let i = 0; i < Number(n); i++) {
    await withFileLock(
      lockPath,
      async () => {
        try {
          await (await open(marker!, 'wx')).close();
        } catch {
          process.exit(3);
        }
        await new Promise((r) => setImmediate(r));
        await unlink(marker!);
      },
      60_000,
    );
  }
  process.stdout.write('done\n');
}
