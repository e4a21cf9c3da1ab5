// One image for everything deploy/ runs in the cluster, set in one place: the kustomization's
// images: entry, where it is pinned by digest (docs/binding.md, "Install"). Two names drift
// apart, and an image the entry does not name escapes the pin.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { docs, yamlFiles, type Container } from './manifests.js';

/** The repository of an image reference (tag and digest dropped). */
function repository(image: string): string {
  const noDigest = image.split('@')[0]!;
  const slash = noDigest.lastIndexOf('/');
  const colon = noDigest.lastIndexOf(':');
  return colon > slash ? noDigest.slice(0, colon) : noDigest;
}

describe('container images in deploy/', () => {
  it('are one repository, and the controller kustomization pins that one', () => {
    const images: { where: string; image: string }[] = [];
    for (const file of yamlFiles('deploy')) {
      for (const d of docs(file)) {
        const pod = d.spec?.template?.spec ?? (d.kind === 'Pod' ? d.spec : undefined);
        const containers: Container[] = [...(pod?.containers ?? []), ...(pod?.initContainers ?? [])];
        for (const c of containers) if (c.image !== undefined) images.push({ where: `${file} ${d.kind}/${d.metadata?.name} ${c.name}`, image: c.image });
      }
    }
    assert.ok(images.length > 0, 'no container image found in deploy/');
    const repositories = new Set(images.map((i) => repository(i.image)));
    assert.equal(repositories.size, 1, `several image repositories:\n${images.map((i) => `${i.where}: ${i.image}`).join('\n')}`);
    const [repo] = repositories;
    const entries = docs('deploy/controller/kustomization.yaml').flatMap((d) => d.images ?? []);
    assert.ok(entries.some((e) => e.name === repo), `deploy/controller/kustomization.yaml has no images: entry for ${repo}`);
  });
});
