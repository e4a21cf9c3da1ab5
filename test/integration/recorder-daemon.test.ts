// test-group: kernel-log (reads or changes the kernel log and its printk rate limit: runs alone, test/run.sh)
// `spoke recorder`, the node daemon, as a real process under each recording backend this machine
// supports: a pod annotated with a ProfileRecording runs under the logging profile on real
// containerd + runc, a child and a grandchild make its calls, and the daemon reports one
// ProfileRecordingResult to the in-test API server. The eBPF backend reports the calls; the
// audit backend reports them or marks the result incomplete (lostRecords > 0), never silently
// short.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { POD_RECORDING_ANNOTATION, type ProfileRecordingResult } from '../../src/controller/recording.js';
import { installLoggingProfile } from '../../src/cri/recording.js';
import { startProfiledContainer } from '../../src/recorder/cri.js';
import { BUSYBOX_IMAGE } from '../helpers/busybox-image.js';
import { SPOKE_BIN } from '../helpers/cli.js';
import { startContainerd, type Containerd } from '../helpers/containerd.js';
import { CriClient, hostNetworkPod } from '../helpers/cri-client.js';
import { fakeKubeConfig, FakeApiServer, PROFILE_RECORDINGS, PROFILE_RECORDING_RESULTS } from '../helpers/fake-apiserver.js';
import { NESTED, recordingBackends, recordingSkipReason } from '../helpers/recording.js';


const skip = recordingSkipReason();

/** Resolves when the daemon's stderr carries a JSON log line with msg `msg`. */
function logged(child: ChildProcess, msg: string, lines: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        lines.push(line);
        if (line.includes(`"msg":"${msg}"`)) {
          child.stderr!.off('data', onData);
          resolve();
        }
      }
    };
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`spoke recorder exited (${code}) before "${msg}":\n${lines.join('\n')}`)));
  });
}

for (const { backend, skip: unavailable } of recordingBackends()) {
  describe(`spoke recorder --backend ${backend}`, { skip: skip ?? unavailable, timeout: 180_000 }, () => {
    let containerd: Containerd;
    let fake: FakeApiServer;
    let dir: string;
    let daemon: ChildProcess | undefined;
    const lines: string[] = [];

    before(async () => {
      containerd = await startContainerd();
      dir = mkdtempSync(join(tmpdir(), `spoke-recd-${backend}-`));
      fake = new FakeApiServer({ resources: [PROFILE_RECORDINGS, PROFILE_RECORDING_RESULTS], token: 'node-token' });
      const server = await fake.listen();
      const kubeconfig = join(dir, 'kubeconfig');
      writeFileSync(kubeconfig, fakeKubeConfig(server, 'node-token').exportConfig());
      fake.create(PROFILE_RECORDINGS, { metadata: { name: 'web', namespace: 'team' }, spec: { podSelector: { matchLabels: { app: 'web' } }, publish: { repository: 'registry.example.com/rec/team' } } });
      daemon = spawn(process.execPath, [SPOKE_BIN, 'recorder', '--backend', backend, '--upstream', containerd.socket, '--node', 'node-1', '--kubeconfig', kubeconfig, '--poll-ms', '200'], { stdio: ['ignore', 'ignore', 'pipe'] });
      await logged(daemon, 'recording', lines);
    });
    after(async () => {
      if (daemon && daemon.exitCode === null) {
        const exited = new Promise((r) => daemon!.once('exit', r));
        daemon.kill('SIGTERM');
        await exited;
      }
      await containerd?.stop();
      await fake?.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    test('a recorded pod whose child and grandchild make the calls: one result with them, or one marked incomplete', async () => {
      const cri = new CriClient(containerd.socket);
      try {
        const profile = await installLoggingProfile(join(dir, 'recording'), join(dir, 'seccomp'));
        const base = hostNetworkPod('web-1', mkdtempSync(join(dir, 'logs-')), { namespace: 'team' });
        const podConfig = { ...base, labels: { app: 'web' }, annotations: { [POD_RECORDING_ANNOTATION]: 'web' } };
        const podId = (await cri.rt('RunPodSandbox', { config: podConfig })).pod_sandbox_id as string;
        const reported = logged(daemon!, 'reported', lines);
        const id = await startProfiledContainer(cri, { id: podId, config: podConfig }, { name: 'app', image: BUSYBOX_IMAGE, command: NESTED, profilePath: profile });
        await reported;
        const results = fake.list(PROFILE_RECORDING_RESULTS) as unknown as ProfileRecordingResult[];
        assert.equal(results.length, 1, lines.join('\n'));
        const spec = results[0]!.spec;
        assert.equal(spec.containerID, id);
        assert.equal(spec.container, 'app');
        assert.equal(spec.node, 'node-1');
        const complete = ['mkdir', 'chmod'].every((s) => spec.syscalls.includes(s));
        if (backend === 'bpf') {
          assert.ok(complete, `mkdir and chmod in ${spec.syscalls.join(' ')}`);
          assert.equal(spec.lostRecords, 0);
          assert.ok(!spec.syscalls.includes('rmdir'));
        } else {
          assert.ok(complete || (spec.lostRecords ?? 0) > 0, `audit: either the calls or an incomplete result (${spec.syscalls.join(' ')}, lostRecords ${spec.lostRecords})`);
        }
      } finally {
        cri.close();
      }
    });
  });
}
