// The kubelet drop-in we ship (deploy/systemd/*.conf) must really make the kubelet talk CRI to
// the shim: a drop-in that only defines a variable no ExecStart uses leaves the kubelet on
// containerd, and bound pods run without spoke. No systemd and no kubelet run here, so the
// command line is derived from the unit files as systemd builds it (./systemd.ts) on a node set
// up by kubeadm from the Kubernetes packages, and read as the kubelet's flag parser reads it.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { lastFlagValue, serviceCommand, type UnitFile } from './systemd.js';

const root = new URL('../../../../', import.meta.url);
const SHIM_ENDPOINT = 'unix:///run/spoke/spoke.sock';

/** kubelet.service of the Kubernetes deb/rpm packages. */
const KUBELET_SERVICE: UnitFile = {
  name: 'kubelet.service',
  text: `[Unit]
Description=kubelet: The Kubernetes Node Agent
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/usr/bin/kubelet
Restart=always
StartLimitInterval=0
RestartSec=10

[Install]
WantedBy=multi-user.target
`,
};

/** kubeadm's drop-in from the same packages (kubelet.service.d/10-kubeadm.conf). */
const KUBEADM_DROPIN: UnitFile = {
  name: '10-kubeadm.conf',
  text: `# Note: This dropin only works with kubeadm and kubelet v1.11+
[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
# This is a file that "kubeadm init" and "kubeadm join" generates at runtime, populating the KUBELET_KUBEADM_ARGS variable dynamically
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
# This is a file that the user can use for overrides of the kubelet args as a last resort.
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
`,
};

/** What kubeadm init/join writes: the runtime endpoint it found, containerd's. */
const KUBEADM_FLAGS = 'KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock --pod-infra-container-image=registry.k8s.io/pause:3.9"\n';

/** The kubelet drop-ins we ship. */
function shipped(): UnitFile[] {
  const dir = new URL('deploy/systemd/', root);
  const names = readdirSync(dir).filter((n) => n.endsWith('.conf'));
  assert.ok(names.length > 0, 'no kubelet drop-in in deploy/systemd');
  return names.map((name) => ({ name, text: readFileSync(new URL(name, dir), 'utf8') }));
}

/** The kubelet's command line with kubeadm's files, the node's /etc/default/kubelet and our drop-ins. */
function kubeletArgv(etcDefaultKubelet: string | undefined): string[] {
  const files: Record<string, string> = { '/var/lib/kubelet/kubeadm-flags.env': KUBEADM_FLAGS };
  if (etcDefaultKubelet !== undefined) files['/etc/default/kubelet'] = etcDefaultKubelet;
  const { execStart, argv } = serviceCommand(KUBELET_SERVICE, [KUBEADM_DROPIN, ...shipped()], files);
  assert.equal(execStart.length, 1, `a simple service runs exactly one ExecStart, got ${JSON.stringify(execStart)}`);
  return argv;
}

describe('the kubelet drop-in in deploy/systemd', () => {
  it('points the kubelet of a kubeadm node at the shim, over the endpoint kubeadm wrote', () => {
    const argv = kubeletArgv(undefined);
    assert.equal(argv[0], '/usr/bin/kubelet');
    assert.equal(lastFlagValue(argv, 'container-runtime-endpoint'), SHIM_ENDPOINT, argv.join(' '));
    // Unset, the image endpoint is the runtime endpoint; set, it must be the shim's too.
    assert.equal(lastFlagValue(argv, 'image-service-endpoint') ?? lastFlagValue(argv, 'container-runtime-endpoint'), SHIM_ENDPOINT);
  });

  it("keeps the node's own KUBELET_EXTRA_ARGS and kubeadm's flags, and wins over an endpoint among them", () => {
    const argv = kubeletArgv('KUBELET_EXTRA_ARGS="--node-ip=10.0.0.7 --container-runtime-endpoint=unix:///run/containerd/containerd.sock --max-pods=60"\n');
    for (const kept of ['--node-ip=10.0.0.7', '--max-pods=60', '--config=/var/lib/kubelet/config.yaml', '--kubeconfig=/etc/kubernetes/kubelet.conf', '--pod-infra-container-image=registry.k8s.io/pause:3.9']) {
      assert.ok(argv.includes(kept), `${kept} lost: ${argv.join(' ')}`);
    }
    assert.equal(lastFlagValue(argv, 'container-runtime-endpoint'), SHIM_ENDPOINT);
    assert.equal(lastFlagValue(argv, 'image-service-endpoint') ?? lastFlagValue(argv, 'container-runtime-endpoint'), SHIM_ENDPOINT);
  });

  it("is applied after kubeadm's drop-in (systemd applies drop-ins in file-name order)", () => {
    for (const { name } of shipped()) assert.ok(name > KUBEADM_DROPIN.name, `${name} sorts before ${KUBEADM_DROPIN.name}`);
  });

  it("the README's node quick start leaves the node's KUBELET_EXTRA_ARGS alone", () => {
    // A second KUBELET_EXTRA_ARGS= line in /etc/default/kubelet replaces the node's extra args.
    const readme = readFileSync(new URL('README.md', root), 'utf8');
    assert.doesNotMatch(readme, /KUBELET_EXTRA_ARGS=/);
    for (const { name } of shipped()) assert.ok(readme.includes(`deploy/systemd/${name}`), `README does not install ${name}`);
  });
});
