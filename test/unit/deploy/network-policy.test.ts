// The controller's pods take ingress only where the NetworkPolicy in deploy/controller lets it in
// (docs/binding.md, "Network policy"): its webhook port, from anywhere (the API server's address
// is each cluster's own), and no other port. A NetworkPolicy names ports of the pods it selects:
// a port renamed or renumbered in the Deployment would leave the policy letting in nothing the
// controller listens on, and the API server's reviews dropped (with failurePolicy Fail, pod
// creation in opted-in namespaces). A port added to the Deployment must be given to the policy,
// saying who may reach it. No network plugin runs here: the manifests are read as files.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseListen } from '../../../src/cli/commands/controller.js';
import { controllerDeployment, docs, yamlFiles, type ContainerPort, type Doc } from './manifests.js';

interface PolicyPort {
  port?: number | string;
  endPort?: number;
  protocol?: string;
}
interface IngressRule {
  from?: unknown[];
  ports?: PolicyPort[];
}
type NetworkPolicy = Doc & {
  spec?: {
    podSelector?: { matchLabels?: Record<string, string>; matchExpressions?: unknown[] };
    policyTypes?: string[];
    ingress?: IngressRule[];
    egress?: unknown[];
  };
};

const protocol = (p: { protocol?: string }) => p.protocol ?? 'TCP';

/** The controller's pods' namespace, labels and container ports. */
function controllerPods(): { namespace: string | undefined; labels: Record<string, string>; ports: ContainerPort[] } {
  const { deployment } = controllerDeployment();
  const template = deployment.spec?.template;
  return {
    namespace: deployment.metadata?.namespace,
    labels: template?.metadata?.labels ?? {},
    ports: (template?.spec?.containers ?? []).flatMap((c) => c.ports ?? []),
  };
}

/** The NetworkPolicies in deploy/controller that select the controller's pods. */
function controllerPolicies(): NetworkPolicy[] {
  const pods = controllerPods();
  const policies = yamlFiles('deploy/controller').flatMap((f) => docs(f) as NetworkPolicy[]).filter((d) => d.kind === 'NetworkPolicy');
  for (const p of policies) assert.equal(p.spec?.podSelector?.matchExpressions, undefined, `${p.metadata?.name}: matchExpressions are not read here; select by matchLabels`);
  return policies.filter((p) => p.metadata?.namespace === pods.namespace && Object.entries(p.spec?.podSelector?.matchLabels ?? {}).every(([k, v]) => pods.labels[k] === v));
}

/** The container port a policy port names (by name, or by number), as the network plugin resolves it. */
function resolve(port: PolicyPort, ports: readonly ContainerPort[]): ContainerPort | undefined {
  const found = ports.find((c) => (typeof port.port === 'string' ? c.name === port.port : c.containerPort === port.port));
  return found !== undefined && protocol(found) === protocol(port) ? found : undefined;
}

describe('the NetworkPolicy of the controller in deploy/controller', () => {
  it('one selects the controller pods, for ingress only (egress is left to the cluster)', () => {
    const policies = controllerPolicies();
    assert.equal(policies.length, 1, 'no NetworkPolicy, or several, select the controller pods');
    const [policy] = policies;
    assert.deepEqual(policy!.spec?.policyTypes, ['Ingress']);
    assert.equal(policy!.spec?.egress, undefined);
  });

  it("lets in exactly the controller's container ports, each named as the Deployment names it", () => {
    const { ports } = controllerPods();
    assert.ok(ports.length > 0, 'the controller container declares no ports');
    const reached = new Set<ContainerPort>();
    for (const [i, rule] of (controllerPolicies()[0]?.spec?.ingress ?? []).entries()) {
      // A rule without ports lets every port in.
      assert.ok((rule.ports ?? []).length > 0, `ingress[${i}] names no ports`);
      for (const p of rule.ports ?? []) {
        assert.equal(p.endPort, undefined, `ingress[${i}]: a port range`);
        const port = resolve(p, ports);
        assert.ok(port !== undefined, `ingress[${i}]: port ${String(p.port)}/${protocol(p)} is no port of the controller container (${ports.map((c) => `${c.name}=${c.containerPort}/${protocol(c)}`).join(', ')})`);
        reached.add(port);
      }
    }
    assert.deepEqual(ports.filter((c) => !reached.has(c)), [], 'container ports the policy does not let in');
  });

  it('lets every source reach the port the controller listens on (--listen): the API server calls it there', () => {
    const listen = controllerDeployment().container.args?.find((a) => a.startsWith('--listen='));
    assert.ok(listen !== undefined, 'the Deployment gives no --listen');
    const { port } = parseListen(listen.slice('--listen='.length));
    const { ports } = controllerPods();
    const webhook = ports.find((c) => c.name === 'webhook');
    assert.equal(webhook?.containerPort, port, `the container port named webhook is not ${port}, where the controller listens`);
    const rules = (controllerPolicies()[0]?.spec?.ingress ?? []).filter((r) => (r.ports ?? []).some((p) => resolve(p, ports) === webhook));
    assert.ok(rules.some((r) => r.from === undefined), 'the webhook port is let in only from some sources; the API server calls from an address each cluster has its own');
  });
});
