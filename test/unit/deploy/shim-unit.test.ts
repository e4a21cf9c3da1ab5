// The systemd unit's sandbox must fit what the shim does with the shipped node config: it may
// write exactly where that config says it writes (ProtectSystem=strict makes the rest read-only),
// and it keeps the capabilities the code needs. No systemd runs here: the unit file is read as
// systemd reads it (./systemd.ts), the config as the shim reads it.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseShimOptions } from '../../../src/cli/commands/shim-options.js';
import { readNamedFile } from '../../../src/cli/read-file.js';
import type { NodeConfig } from '../../../src/config/node-config.js';
import { parseUnitFile, splitWords, type Assignment } from './systemd.js';

const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));

function unit(): Assignment[] {
  return parseUnitFile(readFileSync(join(ROOT, 'deploy/systemd/spoke-shim.service'), 'utf8')).filter((a) => a.section === 'Service');
}

/** The node config the unit's command line gives with deploy/systemd/config.yaml as /etc/spoke/config.yaml. */
function shippedConfig(): NodeConfig {
  const execStart = unit().find((a) => a.key === 'ExecStart')!;
  const argv = splitWords(execStart.value).slice(2);
  const options = parseShimOptions(argv.map((a) => (a === '/etc/spoke/config.yaml' ? join(ROOT, 'deploy/systemd/config.yaml') : a)), readNamedFile);
  assert.ok(options);
  return options.config;
}

/** Directories the service may write under ProtectSystem=strict. */
function writable(): string[] {
  const out: string[] = [];
  for (const a of unit()) {
    if (a.key === 'ReadWritePaths') out.push(...splitWords(a.value).map((p) => p.replace(/^-/, '')));
    // systemd makes these itself, writable, under /run and /var/lib.
    if (a.key === 'RuntimeDirectory') out.push(...splitWords(a.value).map((d) => `/run/${d}`));
    if (a.key === 'StateDirectory') out.push(...splitWords(a.value).map((d) => `/var/lib/${d}`));
  }
  return out;
}

const under = (path: string, dirs: string[]) => dirs.some((d) => path === d || path.startsWith(`${d}/`));

describe('the systemd unit of the shim', () => {
  it('is strict and lets the shim write its socket directory, its store and the seccomp root of the shipped config', () => {
    assert.ok(unit().some((a) => a.key === 'ProtectSystem' && a.value === 'strict'));
    const config = shippedConfig();
    const rw = writable();
    for (const [what, dir] of [['listen', dirname(config.listen)], ['storeDir', config.storeDir], ['seccompRoot', config.seccompRoot]] as const) {
      assert.ok(under(dir, rw), `${what}: ${dir} is read-only in the unit (ReadWritePaths: ${rw.join(' ')})`);
    }
  });

  it("gives no write access to the runtime's socket directory: the shim only connects there", () => {
    const upstream = dirname(shippedConfig().upstream);
    assert.ok(!under(upstream, writable()), `${upstream} is writable`);
  });

  it('keeps the capabilities the shim uses when it bounds them', () => {
    const bounding = unit().filter((a) => a.key === 'CapabilityBoundingSet');
    if (bounding.length === 0) return;
    const caps = new Set(bounding.flatMap((a) => splitWords(a.value)));
    // apparmor_parser loads and removes profiles (src/apparmor/parser.ts); the AppArmor unload scan
    // must see every task in /proc, also where /proc hides other users' tasks (src/cri/apparmor-unload.ts).
    for (const cap of ['CAP_MAC_ADMIN', 'CAP_SYS_PTRACE']) assert.ok(caps.has(cap), `${cap} missing`);
  });
});
