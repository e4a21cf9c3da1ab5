// Which apparmor_parser compiles spoke's AppArmor profiles, and for what (docs/apparmor.md#the-parser-in-the-name).
// A profile loaded again under a name the kernel holds replaces it (`--replace`) under the
// containers already confined by it, so a profile's name covers, beside its text, whatever else
// decides the policy compiled from that text: the parser (its version line, and its binary's
// bytes: a distribution's patched build keeps the version) and what it compiles for (its
// parser.conf, the policy features file that pins, the kernel's features), taken as what it makes
// of a fixed probe profile that has every rule class spoke writes. All of it read once, at the
// first AppArmor profile (the shim reads it again when the binary is another file: sameParser).

import { open, stat } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import { createHash } from 'node:crypto';
import { sha256Hex } from '../core/digest.js';
import { SpokeError } from '../core/errors.js';
import { renderAppArmor, type AppArmorProfile } from '../profiles/apparmor/index.js';
import { checkArgs, failure, parserPath, runParser, type ParserOptions } from './parser.js';

export interface ParserIdentity {
  /** The binary. */
  parser: string;
  /** What its version line says (`AppArmor parser version <version>`). */
  version: string;
  /** sha256 hex of the version line, the binary's bytes and the compiled probe: what names cover. */
  id: string;
  /** The binary's device, inode, size and times as it was read: another file means another parser. */
  stamp: string;
}

/** The first line `--version` prints; anchored and bounded (a version of at most 64 characters). */
const VERSION_LINE = /^AppArmor parser version ([0-9][0-9A-Za-z.+~-]{0,63})$/;
/** Where the version line is looked for: the start of the output. */
const VERSION_BYTES = 256;
const READ_CHUNK = 64 * 1024;

/** Every rule class spoke writes: the structured sections, and the template's own with any name. */
const PROBE: AppArmorProfile = {
  executable: { allowedExecutables: ['/probe/bin/*'], allowedLibraries: ['/probe/lib/**'] },
  filesystem: { readOnlyPaths: ['/probe/ro/{a,b}/[^.]*'], writeOnlyPaths: ['/probe/wo/?'], readWritePaths: ['/probe/rw/**'] },
  network: { allowRaw: true, allowedProtocols: { allowTcp: true, allowUdp: true } },
  capability: { allowedCapabilities: ['CHOWN', 'NET_BIND_SERVICE'] },
};
const PROBE_NAME = 'spoke-parser-probe';

function unavailable(message: string, cause?: unknown): SpokeError {
  return new SpokeError('FailedPrecondition', message, {}, { cause, reason: 'APPARMOR_UNAVAILABLE' });
}

const stampOf = (s: BigIntStats): string => `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;

/** The file's stamp and the sha256 of its bytes (as many as it had when opened), both of the one file opened. */
async function readBinary(parser: string): Promise<{ stamp: string; sha256: string }> {
  let handle;
  try {
    handle = await open(parser, 'r');
  } catch (e) {
    throw unavailable(`cannot read ${parser} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, e);
  }
  try {
    const stats = await handle.stat({ bigint: true });
    if (!stats.isFile()) throw unavailable(`${parser} is not a regular file`);
    const size = Number(stats.size);
    const hash = createHash('sha256');
    const chunk = Buffer.alloc(READ_CHUNK);
    for (let at = 0; at < size; ) {
      const { bytesRead } = await handle.read(chunk, 0, Math.min(READ_CHUNK, size - at), at);
      if (bytesRead === 0) break;
      hash.update(chunk.subarray(0, bytesRead));
      at += bytesRead;
    }
    return { stamp: stampOf(stats), sha256: hash.digest('hex') };
  } catch (e) {
    // Any failure here says nothing of a profile: the create is refused and tried again, never
    // failed for good as an invalid profile would be.
    if (e instanceof SpokeError) throw e;
    throw unavailable(`cannot read ${parser} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, e);
  } finally {
    await handle.close().catch(() => undefined); // read whole, or refused above
  }
}

/**
 * Identifies the parser `opts` name (module header). FailedPrecondition (APPARMOR_UNAVAILABLE)
 * when it is missing or unreadable, prints no version line of the known form, or cannot compile
 * the probe; a run past the timeout rejects as runParser does (DEADLINE).
 */
export async function identifyParser(opts: ParserOptions = {}): Promise<ParserIdentity> {
  const parser = parserPath(opts);
  const run = { ...opts, parser };
  const binary = await readBinary(parser);
  const said = await runParser(['--version'], '', run);
  if (said.code !== 0 || said.signal !== null) throw unavailable(failure(`${parser} --version`, said));
  const line = said.stdout.subarray(0, VERSION_BYTES).toString('utf8').split('\n', 1)[0]!;
  const version = VERSION_LINE.exec(line)?.[1];
  if (version === undefined) throw unavailable(`${parser} --version did not begin "AppArmor parser version N": ${JSON.stringify(line.slice(0, 100))}`);
  const probe = await runParser([...checkArgs(opts), '--stdout'], renderAppArmor(PROBE, PROBE_NAME), run);
  if (probe.code !== 0 || probe.signal !== null) throw unavailable(failure(`${parser} cannot compile spoke's probe profile`, probe));
  if (probe.stdoutCut) throw unavailable(`${parser} compiled spoke's probe profile to more than ${probe.stdout.length} bytes`);
  const id = sha256Hex(`apparmor_parser\n${line}\nbinary ${binary.sha256}\nprobe ${sha256Hex(probe.stdout)}\n`);
  return { parser, version, id, stamp: binary.stamp };
}

/** Whether the parser `opts` name is still the file `identity` was read from. */
export async function sameParser(identity: ParserIdentity, opts: ParserOptions = {}): Promise<boolean> {
  try {
    return parserPath(opts) === identity.parser && stampOf(await stat(identity.parser, { bigint: true })) === identity.stamp;
  } catch {
    return false; // gone: identified again, which says why
  }
}
