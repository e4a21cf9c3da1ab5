// The node policies shipped in deploy/ admit only signed profiles (README, "Quick start: node
// admin", says why), and they load with the node's own policy parser once their key files are
// in place; the key paths are placeholders, so a key is made up here for each.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { parsePolicy } from '../../../src/policy/load.js';
import { docs, ROOT, yamlFiles } from './manifests.js';

interface PolicyYaml {
  kind?: string;
  signers?: Record<string, { publicKey?: string }>;
  rules?: { scope?: string; action?: string; unsigned?: boolean; signedBy?: string[] }[];
}

/** Every NodeProfilePolicy in deploy/: policy files, and policy.yaml entries of ConfigMaps. */
function shippedPolicies(): { where: string; text: string }[] {
  const out: { where: string; text: string }[] = [];
  for (const file of yamlFiles('deploy')) {
    const text = readFileSync(join(ROOT, file), 'utf8');
    for (const d of docs(file)) {
      if (d.kind === 'NodeProfilePolicy') out.push({ where: file, text });
      if (d.kind === 'ConfigMap' && d.data?.['policy.yaml'] !== undefined) out.push({ where: `${file} ConfigMap ${d.metadata?.name}`, text: d.data['policy.yaml'] });
    }
  }
  return out;
}

describe('node policies in deploy/', () => {
  it('admit only signed profiles', () => {
    const policies = shippedPolicies();
    assert.ok(policies.length > 0, 'no node policy in deploy/');
    for (const { where, text } of policies) {
      const policy = parse(text) as PolicyYaml;
      const allow = (policy.rules ?? []).filter((r) => (r.action ?? 'allow') === 'allow');
      assert.ok(allow.length > 0, `${where}: admits nothing`);
      for (const r of allow) {
        assert.notEqual(r.unsigned, true, `${where}: ${r.scope} admits unsigned profiles`);
        assert.ok((r.signedBy ?? []).length > 0, `${where}: ${r.scope} names no signer`);
      }
    }
  });

  it('load with the node policy parser once their public keys exist', () => {
    const { publicKey } = generateKeyPairSync('ed25519');
    const pem = Buffer.from(publicKey.export({ type: 'spki', format: 'pem' }));
    for (const { where, text } of shippedPolicies()) {
      const keys = new Set(Object.values((parse(text) as PolicyYaml).signers ?? {}).flatMap((s) => (s.publicKey ? [s.publicKey] : [])));
      const policy = parsePolicy(text, where, (path) => {
        if (keys.has(path)) return pem;
        throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
      });
      assert.ok(policy.rules.length > 0);
    }
  });
});
