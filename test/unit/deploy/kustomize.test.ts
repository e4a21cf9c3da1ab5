// `kubectl apply -k deploy/controller` must build, and install every manifest shipped for the
// cluster. kustomize (by default) loads single files only from inside the directory it builds;
// anything outside must be a directory with a kustomization of its own. No kustomize runs in
// these tests: the rule is checked on the files.
import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { describe, it } from 'node:test';
import { docs, ROOT, yamlFiles } from './manifests.js';

const KUSTOMIZATION = /(^|\/)kustomization\.ya?ml$/;

function kustomizationIn(dir: string): string | undefined {
  return ['kustomization.yaml', 'kustomization.yml'].map((n) => join(dir, n)).find((f) => existsSync(join(ROOT, f)));
}

/** The files a kustomization reaches, through the directories it includes. */
function reached(file: string, problems: string[]): string[] {
  const dir = dirname(file);
  const out: string[] = [];
  for (const doc of docs(file)) {
    for (const entry of (doc as { resources?: string[] }).resources ?? []) {
      const path = join(dir, entry);
      if (!existsSync(join(ROOT, path))) {
        problems.push(`${file}: ${entry} does not exist`);
        continue;
      }
      if (statSync(join(ROOT, path)).isDirectory()) {
        const inner = kustomizationIn(path);
        if (inner === undefined) problems.push(`${file}: ${entry} is a directory without a kustomization`);
        else out.push(inner, ...reached(inner, problems));
      } else if (relative(dir, path).startsWith('..')) {
        problems.push(`${file}: ${entry} is a file outside ${dir}: kustomize refuses it; include its directory`);
      } else out.push(path);
    }
  }
  return out;
}

describe('kustomize layout of deploy/', () => {
  it('deploy/controller builds under the default load restrictor and installs every cluster manifest', () => {
    const problems: string[] = [];
    const files = new Set(reached('deploy/controller/kustomization.yaml', problems));
    assert.deepEqual(problems, []);
    const shipped = [...yamlFiles('deploy/controller'), ...yamlFiles('deploy/crds')].filter((f) => !KUSTOMIZATION.test(f));
    assert.deepEqual(shipped.filter((f) => !files.has(f)), [], 'shipped but not installed by kubectl apply -k deploy/controller');
  });
});
