// The eBPF recorder's cost on a busy container (not a test: numbers for the README and review).
// Runs syscall-heavy busybox workloads in runc under a seccomp filter (defaultAction ALLOW, so
// every call passes the `seccomp.mode == 2` check), alternating: without bpftrace; with spoke's
// program in its node-daemon form (every namespace counted: the recorded container's cost, the
// worst case); and in its `spoke record` form for another pod (the cost to a bystander: checks
// only). Prints the median wall time of each. Usage, as root after test/setup.sh:
//   node dist/test/bench/bpf-overhead.js [--rounds N]

import { BpfCounter, bpfSupport } from '../../src/recorder/bpf.js';
import { createRuncSandbox } from '../helpers/runc.js';

const ALLOW = JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'] });
const WORKLOADS: [string, string[]][] = [
  ['fixed cost (true)', ['/bin/true']],
  ['400k read/write (dd bs=1)', ['/bin/sh', '-c', 'dd if=/dev/zero of=/dev/null bs=1 count=200000 2>/dev/null']],
  ['2000 forks (mkdir+rmdir each)', ['/bin/sh', '-c', 'i=0; while [ $i -lt 2000 ]; do (mkdir /tmp/b$i; rmdir /tmp/b$i); i=$((i+1)); done']],
];

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const support = bpfSupport();
  if (!support.ok) throw new Error(`eBPF backend unavailable: ${support.reason}`);
  const i = process.argv.indexOf('--rounds');
  const rounds = i > 0 ? Number(process.argv[i + 1]) : 5;
  const sandbox = createRuncSandbox();
  const MODES = ['off', 'counted', 'bystander'] as const;
  const times = new Map<string, Record<(typeof MODES)[number], number[]>>(WORKLOADS.map(([n]) => [n, { off: [], counted: [], bystander: [] }]));
  try {
    for (let r = 0; r < rounds; r++) {
      for (const mode of MODES) {
        // An IPC namespace inode of 1 exists nowhere: nothing of the workload matches.
        const counter = mode === 'off' ? undefined : await BpfCounter.start(mode === 'counted' ? { dumpEveryMs: 1000 } : { ipcNamespaces: [1] });
        try {
          for (const [name, args] of WORKLOADS) {
            const t = process.hrtime.bigint();
            const res = await sandbox.run({ args, seccompJson: ALLOW });
            const ms = Number(process.hrtime.bigint() - t) / 1e6;
            if (res.status !== 0) throw new Error(`${name} failed: ${res.stderr}`);
            times.get(name)![mode].push(ms);
          }
        } finally {
          if (counter) await counter.stop();
        }
      }
    }
  } finally {
    sandbox.cleanup();
  }
  const fixed = times.get(WORKLOADS[0]![0])!;
  console.log(`rounds: ${rounds}; median wall ms per run; net = minus the fixed cost of starting a container`);
  for (const [name, t] of times) {
    const cells = MODES.map((m) => {
      const net = median(t[m]) - median(fixed[m]);
      const vsOff = net / (median(t.off) - median(fixed.off)) - 1;
      return `${m} ${median(t[m]).toFixed(0).padStart(5)}${name === WORKLOADS[0]![0] || m === 'off' ? '' : ` (net ${vsOff >= 0 ? '+' : ''}${(vsOff * 100).toFixed(0)} %)`}`;
    });
    console.log(`${name.padEnd(32)} ${cells.join('  ')}`);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
