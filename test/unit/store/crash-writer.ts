// Child process for the crash test: announces itself, then writes 64 MiB atomically.
import { writeFileAtomic } from '../../../src/store/fsutil.js';

const [target, tmpDir] = process.argv.slice(2) as [string, string];
process.stdout.write('start\n');
await writeFileAtomic(target, Buffer.alloc(64 * 1024 * 1024, 0x61), tmpDir);
