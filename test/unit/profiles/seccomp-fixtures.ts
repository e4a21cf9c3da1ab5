// The shipped node baseline, shared by seccomp tests.

import { readFileSync } from 'node:fs';
import { defaultBaselinePath } from '../../../src/config/node-config.js';

export function baselineBytes(): Buffer {
  return readFileSync(defaultBaselinePath());
}
