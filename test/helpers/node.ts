// A node-side context for tests: temp store, a policy file written from YAML text, and the real
// pipeline wiring (registry client, verifier) that `spoke pull` and the shim use.

import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNodeContext, type NodeContext } from '../../src/cli/wiring.js';
import { defaultNodeConfig, type NodeConfig } from '../../src/config/node-config.js';
import type { PullObserver } from '../../src/pull.js';

export interface TestNode extends NodeContext {
  dir: string;
  policyFile: string;
  writePolicy(yaml: string): void;
  dispose(): Promise<void>;
}

/** `policyYaml` is the whole policy file; `config` overrides node config keys (e.g. pullTimeout). */
export function testNode(policyYaml: string, config: Partial<NodeConfig> = {}, opts: { observer?: PullObserver } = {}): TestNode {
  const dir = mkdtempSync(join(tmpdir(), 'spoke-node-'));
  const policyFile = join(dir, 'policy.yaml');
  writeFileSync(policyFile, policyYaml);
  const ctx = createNodeContext({ ...defaultNodeConfig(), policy: policyFile, storeDir: join(dir, 'store'), seccompRoot: join(dir, 'seccomp'), ...config }, opts);
  return {
    ...ctx,
    dir,
    policyFile,
    writePolicy: (yaml: string) => {
      writeFileSync(policyFile, yaml);
      ctx.policy.reload();
    },
    dispose: async () => {
      await ctx.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Runs `fn` on a fresh testNode(policyYaml) and disposes of the node afterwards, whatever `fn` does. */
/** The store's blobs, records and temp files (a refused pull leaves none, not even under a temp name). */
export function storeFiles(node: TestNode): string[] {
  return ['blobs/sha256', 'profiles/sha256', 'tmp'].flatMap((sub) => {
    const dir = `${node.config.storeDir}/${sub}`;
    return existsSync(dir) ? readdirSync(dir).map((f) => `${sub}/${f}`) : [];
  });
}

export async function withTestNode<T>(policyYaml: string, fn: (node: TestNode) => Promise<T>): Promise<T> {
  const node = testNode(policyYaml);
  try {
    return await fn(node);
  } finally {
    await node.dispose();
  }
}

/** A policy allowing unsigned profiles of `kinds` (seccomp by default) from `scopes`, plain HTTP for their hosts. */
export function unsignedPolicy(scopes: string[], extra = '', kinds: readonly string[] = ['seccomp']): string {
  const hosts = [...new Set(scopes.map((s) => s.split('/')[0]!))];
  return [
    'apiVersion: spoke.dev/v1alpha1',
    'kind: NodeProfilePolicy',
    'rules:',
    ...scopes.flatMap((s) => [`  - scope: ${s}`, `    kinds: [${kinds.join(', ')}]`, '    unsigned: true']),
    `insecure: [${hosts.join(', ')}]`,
    extra,
  ].join('\n');
}
