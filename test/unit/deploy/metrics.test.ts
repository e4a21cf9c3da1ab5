// The shim's metrics and /healthz answer anyone who reaches the port, without authentication:
// every shim config shipped in deploy/ serves them on the node's loopback, or not at all.
// Exposing them is the admin's choice (deploy/systemd/config.yaml says how).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseNodeConfig } from '../../../src/config/node-config.js';
import { parseListenAddress } from '../../../src/observe/metrics.js';
import { shimConfigs } from './manifests.js';

const loopback = (host: string) => host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);

describe('metrics in the shipped shim configs', () => {
  it('stay on the loopback address', () => {
    const configs = shimConfigs();
    assert.ok(configs.length > 0, 'no shim config found in deploy/');
    for (const { where, text } of configs) {
      const metrics = parseNodeConfig(text, where).metrics;
      if (metrics === undefined || metrics === '') continue;
      const { host } = parseListenAddress(metrics);
      assert.ok(loopback(host), `${where}: metrics on ${metrics}, reachable beyond the node`);
    }
  });
});
