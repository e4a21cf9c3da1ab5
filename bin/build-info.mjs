#!/usr/bin/env node
// Run by `npm run build` after tsc: records the git commit the build came from in
// dist/build-info.json, for `spoke --version`. Outside a git checkout the commit is "unknown".
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
let commit = 'unknown';
try {
  commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  if (dirty !== '') commit += '-dirty';
} catch {
  // not a git checkout (a release tarball): "unknown"
}
writeFileSync(join(root, 'dist', 'build-info.json'), JSON.stringify({ commit }) + '\n');
