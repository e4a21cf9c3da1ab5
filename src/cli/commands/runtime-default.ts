// `spoke runtime-default`: the runtime's default seccomp profile, read live from the runtime the
// way the shim reads it (src/cri/runtime-default-probe.ts), for inspection or for pinning.

import { loadNodeConfig } from '../../config/node-config.js';
import { sha256Hex } from '../../core/digest.js';
import { SpokeError } from '../../core/errors.js';
import { readNamedFile } from '../read-file.js';
import { silentLogger } from '../../core/runtime.js';
import { readRuntimeDefault } from '../../cri/runtime-default-probe.js';
import { Upstream } from '../../cri/upstream.js';
import { decodeSeccomp, validate } from '../../profiles/seccomp/index.js';
import { emit, parseCommand } from '../args.js';

const HELP = `usage: spoke runtime-default [--upstream SOCK] [--config FILE] [--json]

Reads the default seccomp profile of the running container runtime, which is what a pod's
RuntimeDefault base profile means to the shim: a throwaway pod sandbox (host network) and a
container from the sandbox image that CRI Status names are created with seccomp RuntimeDefault,
linux.seccomp is read from the container's runtime spec (verbose ContainerStatus), and both are
removed. The container is never started. Prints the profile (runtime-spec LinuxSeccomp JSON);
the output can be pinned with the shim's config key runtimeDefault: FILE. A file pinned in the
config is not consulted here.

options:
  --upstream SOCK   the runtime's CRI socket (default: upstream from the config,
                    /run/containerd/containerd.sock)
  --config FILE     node config to take upstream from (default /etc/spoke/config.yaml)
  --json            print {sandboxImage, sha256, profile} as JSON`;

const CONNECT_TIMEOUT_MS = 10_000;

export async function run(argv: string[]): Promise<number> {
  const { values, help } = parseCommand(argv, { upstream: { type: 'string' }, config: { type: 'string' }, json: { type: 'boolean' } }, HELP, [0, 0]);
  if (help) return 0;
  const config = loadNodeConfig(values.config, { upstream: values.upstream }, { readFile: readNamedFile });
  const upstream = new Upstream(config.upstream, silentLogger);
  // The upstream session does not keep the process alive (it is the shim's idle connection):
  // this timer does, until the read is done.
  const alive = setInterval(() => {}, 60_000);
  upstream.start();
  try {
    if (!(await upstream.waitUp(CONNECT_TIMEOUT_MS))) {
      throw new SpokeError('Unavailable', `the runtime at ${config.upstream} is not answering`, {}, { reason: 'RUNTIME_DEFAULT_UNAVAILABLE' });
    }
    const reading = await readRuntimeDefault(upstream);
    // Checked as the shim checks it: a profile the shim would refuse is reported as an error.
    validate(decodeSeccomp(reading.bytes));
    const profile = JSON.parse(reading.bytes.toString('utf8')) as unknown;
    emit(values.json, { sandboxImage: reading.sandboxImage, sha256: sha256Hex(reading.bytes), profile }, () => JSON.stringify(profile, null, 2));
    return 0;
  } finally {
    clearInterval(alive);
    await upstream.close();
  }
}
