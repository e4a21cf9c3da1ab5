import { test } from 'node:test';
import assert from 'node:assert/strict';
import { namedProfiles } from '../../../src/cri/runtime-config.js';

const SPOKE_DIR = '/var/lib/kubelet/seccomp/spoke';
const effective = `${SPOKE_DIR}/${'a'.repeat(64)}.json`;

test('a CRI-O spec names its seccomp file past hundreds of pod annotations: still found', () => {
  const annotations: Record<string, string> = {};
  for (let i = 0; i < 400; i++) annotations[`a.example/${String(i).padStart(3, '0')}`] = 'x';
  annotations['io.kubernetes.cri-o.SeccompProfilePath'] = effective;
  const info = JSON.stringify({ runtimeSpec: { annotations } });
  assert.deepEqual(namedProfiles(info, SPOKE_DIR).seccomp, [effective]);
});

test('an annotation naming no file of spoke adds nothing', () => {
  const info = JSON.stringify({ runtimeSpec: { annotations: { 'io.kubernetes.cri-o.SeccompProfilePath': '/elsewhere/x.json', other: `${SPOKE_DIR}/short.json` } } });
  assert.deepEqual(namedProfiles(info, SPOKE_DIR).seccomp, []);
});
