// The controller and the shims we ship must agree on how pods are bound. The controller binds by
// the KEP field unless it runs --annotations, and an API server without the alpha gate refuses
// that field: every bound pod would fail to create. So the shipped Deployment must run
// annotation mode, with flags the controller's own parser accepts, and every shim config in
// deploy/ must apply the annotations it writes. No kube-apiserver runs here: the manifests are
// read as the controller and the shim read their command lines and config.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseListen, run as runController } from '../../../src/cli/commands/controller.js';
import { parseShimOptions } from '../../../src/cli/commands/shim-options.js';
import { readNamedFile } from '../../../src/cli/read-file.js';
import { parseNodeConfig } from '../../../src/config/node-config.js';
import { controllerDeployment, ROOT, shimConfigs } from './manifests.js';
import { parseUnitFile, splitWords } from './systemd.js';

function controllerArgs(): string[] {
  const { container } = controllerDeployment();
  assert.ok(container.args, 'no args on the controller container in deploy/controller/deployment.yaml');
  assert.equal(container.command, undefined, 'the image runs spoke; the args name its command');
  assert.equal(container.args[0], 'controller');
  return container.args.slice(1);
}

/** Runs `spoke controller ARGS --help`: the real, strict flag parser, which stops at --help. */
async function controllerAccepts(args: string[]): Promise<number> {
  const write = process.stdout.write;
  process.stdout.write = (() => true) as typeof process.stdout.write;
  try {
    return await runController([...args, '--help']);
  } finally {
    process.stdout.write = write;
  }
}

describe('binding mode of the shipped manifests', () => {
  it("every flag of the controller Deployment is one the controller's parser accepts", async () => {
    const args = controllerArgs();
    assert.equal(await controllerAccepts(args), 0);
    // The check above is real: an unknown flag is a usage error.
    await assert.rejects(controllerAccepts([...args, '--no-such-flag']), /no-such-flag/);
    const listen = args.find((a) => a.startsWith('--listen='));
    if (listen !== undefined) parseListen(listen.slice('--listen='.length));
  });

  it('the controller Deployment binds by annotation', () => {
    // `--annotations` is a boolean flag of the controller: given, its mode is annotations.
    assert.ok(controllerArgs().includes('--annotations'), 'the controller would bind by the KEP field, which API servers without the alpha gate reject');
  });

  it('every shim config in deploy/ applies the annotations the controller writes', () => {
    const configs = shimConfigs();
    assert.ok(configs.length > 0, 'no shim config found in deploy/');
    for (const { where, text } of configs) assert.equal(parseNodeConfig(text, where).annotations, true, `${where}: annotations is not true`);
  });

  it("the systemd unit's command line, with the shipped config as /etc/spoke/config.yaml, runs annotation mode", () => {
    const unit = parseUnitFile(readFileSync(join(ROOT, 'deploy/systemd/spoke-shim.service'), 'utf8'));
    const execStart = unit.filter((a) => a.section === 'Service' && a.key === 'ExecStart');
    assert.equal(execStart.length, 1);
    const argv = splitWords(execStart[0]!.value);
    assert.equal(argv[1], 'shim');
    // README, "Quick start: node admin": deploy/systemd/config.yaml is copied to /etc/spoke/config.yaml.
    const options = parseShimOptions(argv.slice(2).map((a) => (a === '/etc/spoke/config.yaml' ? join(ROOT, 'deploy/systemd/config.yaml') : a)), readNamedFile);
    assert.equal(options?.config.annotations, true);
  });
});
