// The shipped schemas are the one source of truth for shape (bin/gen-validators.mjs,
// docs/configuration.md): the generated validators must follow them, a change to a schema
// changes what loads, and a schema error points at the file's line.
import { strict as assert } from 'node:assert';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parsePolicy, YamlFile, type SchemaValidator } from '../../../src/policy/index.js';
import { throwsWith } from '../../helpers/assert.js';
import { HEADER, memFs } from './fixtures.js';

const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const GENERATOR = join(ROOT, 'bin', 'gen-validators.mjs');
const GENERATED = ['src/policy/schema-generated.ts', 'src/config/schema-generated.ts', 'src/controller/schema-generated.ts'];

/** A copy of the schemas and the generated modules, with the policy schema changed by `edit`. */
function copyWithPolicySchema(edit: (schema: { $defs: { rule: { properties: Record<string, unknown> } } }) => void): string {
  const dir = mkdtempSync(join(tmpdir(), 'spoke-schema-'));
  for (const p of ['policy/node-policy.schema.json', 'policy/node-config.schema.json', 'deploy/crds', ...GENERATED]) cpSync(join(ROOT, p), join(dir, p), { recursive: true });
  const file = join(dir, 'policy/node-policy.schema.json');
  const schema = JSON.parse(readFileSync(file, 'utf8'));
  edit(schema);
  writeFileSync(file, JSON.stringify(schema));
  return dir;
}

const rule = (extra: string) => `${HEADER}rules:\n  - scope: r.io/x\n    kinds: [seccomp]\n    unsigned: true\n${extra}`;

describe('generated validators', () => {
  const dirs: string[] = [];
  after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  it('follow the shipped schemas (node bin/gen-validators.mjs --check)', () => {
    execFileSync(process.execPath, [GENERATOR, '--check'], { stdio: 'pipe' });
  });

  it('a schema changed without regenerating fails the check', () => {
    const dir = copyWithPolicySchema((s) => (s.$defs.rule.properties.note = { type: 'string' }));
    dirs.push(dir);
    const r = spawnSync(process.execPath, [GENERATOR, '--check', '--root', dir], { encoding: 'utf8' });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /src\/policy\/schema-generated\.ts does not match/);
  });

  it('a field added to the schema is accepted, and its type enforced at file:line', async () => {
    const dir = copyWithPolicySchema((s) => (s.$defs.rule.properties.note = { type: 'string', maxLength: 80 }));
    dirs.push(dir);
    execFileSync(process.execPath, [GENERATOR, '--root', dir], { stdio: 'pipe' });
    // The generated module is plain JavaScript: load it as it was written.
    const module = join(dir, 'policy-validator.mjs');
    cpSync(join(dir, 'src/policy/schema-generated.ts'), module);
    const { nodePolicy } = (await import(pathToFileURL(module).href)) as { nodePolicy: SchemaValidator };

    // The shipped schema has no `note`: an unknown field, at its key's line.
    const e0 = throwsWith(() => parsePolicy(rule('    note: keep\n'), 'policy.yaml', memFs().readFile), { code: 'InvalidArgument', reason: 'POLICY_INVALID' });
    assert.deepEqual([e0.context.line, e0.context.path], [7, 'rules[0].note']);

    assert.ok(YamlFile.load(rule('    note: keep\n'), 'policy.yaml', 'POLICY_INVALID', nodePolicy).data);
    const e = throwsWith(() => YamlFile.load(rule('    note:\n      - 1\n'), 'policy.yaml', 'POLICY_INVALID', nodePolicy), { code: 'InvalidArgument', reason: 'POLICY_INVALID' });
    assert.deepEqual([e.context.file, e.context.line, e.context.path], ['policy.yaml', 8, 'rules[0].note']);
    assert.ok(e.message.startsWith('policy.yaml:8: rules[0].note: '), e.message);
  });
});

describe('schema errors point at the line of the field at fault', () => {
  const at = (text: string) => {
    const e = throwsWith(() => parsePolicy(text, 'policy.yaml', memFs().readFile), { code: 'InvalidArgument', reason: 'POLICY_INVALID' });
    assert.ok(e.message.startsWith(`policy.yaml:${e.context.line}: ${e.context.path}: `), e.message);
    return [e.context.line, e.context.path];
  };

  it('a bad value: its own line', () => {
    assert.deepEqual(at(rule('    mode: loud\n')), [7, 'rules[0].mode']);
    assert.deepEqual(at(`${HEADER}rules: []\nlimits:\n  maxArtifactBytes: "1MiB"\n`), [5, 'limits.maxArtifactBytes']);
  });

  it('a missing field: the mapping that lacks it', () => {
    assert.deepEqual(at(`${HEADER}rules:\n  - action: deny\n`), [4, 'rules[0].scope']);
  });

  it('an unknown or ill-formed key: the key', () => {
    assert.deepEqual(at(`${HEADER}signers:\n  Bad_Name: { publicKey: /k.pub }\nrules: []\n`), [4, 'signers.Bad_Name']);
    assert.deepEqual(at(`${HEADER}mirrors:\n  r.io:\n    - m.io\n  not a host: [m.io]\nrules: []\n`), [6, 'mirrors.not a host']);
  });

  it('an entry listed twice: the second one', () => {
    assert.deepEqual(at(rule(`    namespaces:\n      - a\n      - b\n      - a\n`)), [10, 'rules[0].namespaces[2]']);
  });

  it('an entry listed twice, whatever it says: "__proto__" too (ajv\'s own check keys a plain object by the entry, and misses it)', () => {
    const signedBy = (list: string) => `${HEADER}signers:\n  k: { publicKey: /k.pub }\nrules:\n  - scope: r.io/x\n    kinds: [seccomp]\n    signedBy: ${list}\n`;
    assert.deepEqual(at(signedBy('[k, k]')), [8, 'rules[0].signedBy[1]']);
    assert.deepEqual(at(signedBy('["__proto__", "__proto__"]')), [8, 'rules[0].signedBy[1]']);
  });

  it('aliases are refused before anything expands them (no alias bomb)', () => {
    const letter = (i: number) => String.fromCharCode(97 + i);
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x, x]', ...Array.from({ length: 8 }, (_, i) => `${letter(i + 1)}: &${letter(i + 1)} [${Array(10).fill(`*${letter(i)}`).join(', ')}]`)];
    assert.deepEqual(at(`${HEADER}rules: []\n${bomb.join('\n')}\n`), [4, 'a']);
  });

  it('keys that look like list indexes stay keys', () => {
    assert.deepEqual(at(`${HEADER}rules: []\nmirrors:\n  "0.io": [7]\n`), [5, 'mirrors.0.io[0]']);
  });
});
