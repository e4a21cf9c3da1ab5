// Entry of the pull command's own bundle, dist/spoke-pull.cjs (bin/bundle.mjs): bin/spoke starts
// it for `spoke pull`, so a pull reads, deserializes and runs only its own code, not every
// command's (docs/benchmarks.md). It answers as `spoke pull` through main.ts does
// (test/integration/cli-fast.test.ts).

import { runAndExit, runCommand } from './run.js';

// argv: node, bin/spoke, "pull", then the command's own arguments.
runAndExit(runCommand(() => import('./commands/pull.js'), process.argv.slice(3)));
