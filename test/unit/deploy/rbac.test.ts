// The controller's replicas elect a leader on one Lease (docs/binding.md#replicas): without the
// rights to it no replica leads, and pods are not counted nor recordings published (a 403 is
// only logged). The shipped RBAC must grant exactly what the elector calls, in the namespace the
// controller runs in. No kube-apiserver runs here: the manifests are read as files.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LEASE_NAME } from '../../../src/cli/commands/controller.js';
import { controllerDeployment, docs, type Doc } from './manifests.js';

interface Rule {
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
  verbs?: string[];
}
type RbacDoc = Doc & {
  rules?: Rule[];
  roleRef?: { kind?: string; name?: string };
  subjects?: { kind?: string; name?: string; namespace?: string }[];
};

describe('deploy/controller/rbac.yaml', () => {
  it("grants the controller's ServiceAccount create on leases and get and update on its Lease, in spoke-system", () => {
    const all = docs('deploy/controller/rbac.yaml') as RbacDoc[];
    const namespace = controllerDeployment().deployment.metadata?.namespace ?? 'spoke-system';
    const bound = all.filter((d) => (d.kind === 'RoleBinding' || d.kind === 'ClusterRoleBinding') && d.subjects?.some((s) => s.kind === 'ServiceAccount' && s.name === 'spoke-controller' && s.namespace === namespace));
    const rules = bound.flatMap((b) => all.filter((r) => r.kind === b.roleRef?.kind && r.metadata?.name === b.roleRef?.name && (r.kind === 'ClusterRole' || r.metadata?.namespace === namespace)).flatMap((r) => r.rules ?? []));
    const allows = (verb: string, name?: string) =>
      rules.some((r) => r.apiGroups?.includes('coordination.k8s.io') && r.resources?.includes('leases') && r.verbs?.includes(verb) && (r.resourceNames === undefined || (name !== undefined && r.resourceNames.includes(name))));
    assert.ok(allows('create'), 'create on leases');
    for (const verb of ['get', 'update']) assert.ok(allows(verb, LEASE_NAME), `${verb} on lease ${LEASE_NAME}`);
    assert.ok(!allows('delete', LEASE_NAME) && !allows('list'), 'nothing more');
  });
});
