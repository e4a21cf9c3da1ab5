#!/usr/bin/env node
// Composition root: the command table. Commands are loaded lazily so `spoke pull` does not pay
// for the shim's gRPC or the controller's Kubernetes client at start-up.

import { EXIT_USAGE } from './errors.js';
import { runAndExit, runCommand, type CommandModule } from './run.js';
import { versionInfo } from './version.js';

export const COMMANDS: Record<string, { summary: string; load: () => Promise<CommandModule> }> = {
  push: { summary: 'package a profile as a KEP-6061 artifact and push it; prints the digest reference', load: () => import('./commands/push.js') },
  pull: { summary: 'pull profile artifacts under the node policy into the store', load: () => import('./commands/pull.js') },
  inspect: { summary: 'show an artifact manifest, kind and sizes without downloading the profile', load: () => import('./commands/inspect.js') },
  policy: { summary: 'policy check REF | policy lint FILE', load: () => import('./commands/policy.js') },
  store: { summary: 'store ls | rm | gc | verify | unpin | forget', load: () => import('./commands/store.js') },
  profile: { summary: 'profile validate FILE | profile render --kind apparmor FILE | profile convert FILE: check a profile, print the AppArmor policy text spoke would load, or convert a Docker profile', load: () => import('./commands/profile.js') },
  merge: { summary: 'print the effective profile (baseline ∩ [base] ∩ ARTIFACT); --explain shows what was constrained', load: () => import('./commands/merge.js') },
  diff: { summary: 'diff OLD NEW: what a profile update loosens or tightens, by behaviour; exit 1 when it loosens anything', load: () => import('./commands/diff.js') },
  record: { summary: 'run a command in a container under a logging profile and write (or push) the seccomp profile it needs; prints the digest reference with --push', load: () => import('./commands/record.js') },
  recorder: { summary: "node half of ProfileRecording: record annotated pods' containers and report results", load: () => import('./commands/recorder.js') },
  denials: { summary: 'the calls audit-mode profiles logged instead of denying, per container and syscall (kernel audit records)', load: () => import('./commands/denials.js') },
  binding: { summary: 'binding apply -f BINDINGS POD | binding validate -f BINDINGS: the binding webhook offline', load: () => import('./commands/binding.js') },
  controller: { summary: 'run the ProfileBinding admission webhooks (list/watch cache, status)', load: () => import('./commands/controller.js') },
  ps: { summary: 'which container runs which profile spoke applied (reference, digest, effective file, what the merge constrained); --explain CONTAINER', load: () => import('./commands/ps.js') },
  status: { summary: "check this node: policy, baseline, store, and the shim's CRI socket and feature flag", load: () => import('./commands/status.js') },
  shim: { summary: 'the KEP-6061 CRI shim between the kubelet and the runtime (node daemon)', load: () => import('./commands/shim.js') },
  'runtime-default': { summary: "print the runtime's default seccomp profile (what a RuntimeDefault base means), read live from the runtime", load: () => import('./commands/runtime-default.js') },
  sign: { summary: 'sign an artifact digest with a local key (sigstore bundle referrer and/or cosign .sig); prints the digest reference', load: () => import('./commands/sign.js') },
  verify: { summary: "verify REF's signature offline under the node policy; prints the signer, format and identity", load: () => import('./commands/verify.js') },
};

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((k) => k.length));
  return [
    'usage: spoke <command> [options]   (spoke <command> --help for details; spoke --version)',
    '',
    'commands:',
    ...Object.entries(COMMANDS).map(([k, v]) => `  ${k.padEnd(width)}  ${v.summary}`),
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage() + '\n');
    return name === undefined ? EXIT_USAGE : 0;
  }
  if (name === '--version' || name === 'version') {
    const v = versionInfo();
    if (rest.includes('--json')) process.stdout.write(JSON.stringify(v) + '\n');
    else process.stdout.write(`spoke ${v.version} (node ${v.node}, commit ${v.commit})\n`);
    return 0;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    process.stderr.write(`InvalidArgument: unknown command ${JSON.stringify(name)}\n${usage()}\n`);
    return EXIT_USAGE;
  }
  return runCommand(cmd.load, rest);
}

runAndExit(main(process.argv.slice(2)));
