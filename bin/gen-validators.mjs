#!/usr/bin/env node
// Run by `npm run build` before tsc: compiles the shipped schemas into standalone ajv validators
// (ajv/dist/standalone), written as src/**/schema-generated.ts and committed. The schemas are the
// one source of truth for the shape of the node policy, the node config and the CRD objects
// (docs/configuration.md); code checks only what a schema cannot say. Generated code, not ajv at
// run time: compiling the policy schema with ajv costs ~100 ms per process, longer than a whole
// `spoke pull --help` (docs/benchmarks.md).
//   node bin/gen-validators.mjs            write the generated modules
//   node bin/gen-validators.mjs --check    exit 1 when one differs from what the schemas give
//   --root DIR                             read schemas and modules under DIR (tests)
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import Ajv, { _ } from 'ajv';
import Ajv2020 from 'ajv/dist/2020.js';
import standaloneCode from 'ajv/dist/standalone/index.js';
import uniqueItemsModule from 'ajv/dist/vocabularies/validation/uniqueItems.js';
import { parseAllDocuments } from 'yaml';

const { values: args } = parseArgs({ options: { check: { type: 'boolean' }, root: { type: 'string' } } });
const root = args.root ?? join(dirname(fileURLToPath(import.meta.url)), '..');

// One error, not all: with allErrors a pattern would also run on a string already found too
// long. verbose: errors carry their schema, from which src/policy/schema.ts words the message
// (ajv's own messages are left out). unicode: false: lengths count UTF-16 units, so the module
// needs no ajv runtime helper.
// (ajv calls that option deprecated and says so; nothing else it logs is dropped.)
const logger = { log: console.log, error: console.error, warn: (m) => String(m).startsWith('DEPRECATED: option unicode') || console.warn(m) };
const OPTIONS = { allErrors: false, verbose: true, messages: false, unicode: false, strict: true, allowUnionTypes: true, logger, code: { source: true, esm: true } };

/**
 * `uniqueItems` over strings, numbers, booleans and nulls, checked with a Map of the entries
 * seen. Ajv's own check of such a list keys a plain object by each entry, where a second
 * "__proto__" finds the object's prototype, not a number, and passes: ["__proto__", "__proto__"]
 * was unique to it. A Map keys those by value. Lists whose items may be objects or lists, or
 * have no type (none in the shipped schemas; the meta-schema has one), keep ajv's pairwise
 * comparison, whose runtime helper generate() refuses in a module. Errors are ajv's (`i` and
 * `j` the two places), which src/policy/schema.ts words as "listed twice".
 */
const ajvUniqueItems = uniqueItemsModule.default;
const SCALAR_TYPES = new Set(['string', 'number', 'integer', 'boolean', 'null']);
function withUniqueItems(ajv) {
  ajv.removeKeyword('uniqueItems');
  return ajv.addKeyword({
    ...ajvUniqueItems,
    code(cxt) {
      const { gen, data, schema, parentSchema } = cxt;
      const types = [parentSchema.items?.type ?? []].flat();
      if (schema !== true || types.length === 0 || !types.every((t) => SCALAR_TYPES.has(t))) return ajvUniqueItems.code(cxt);
      const valid = gen.let('valid', true);
      const seen = gen.const('seen', _`new Map()`);
      const i = gen.let('i');
      const j = gen.let('j');
      cxt.setParams({ i, j });
      gen.for(_`${i} = 0; ${i} < ${data}.length; ${i}++`, () => {
        gen.assign(j, _`${seen}.get(${data}[${i}])`);
        gen.if(_`${j} !== undefined`, () => {
          cxt.error();
          gen.assign(valid, false).break();
        });
        gen.code(_`${seen}.set(${data}[${i}], ${i})`);
      });
      cxt.ok(valid);
    },
  });
}

/** Only what validation needs: descriptions are for people and editors. */
function strip(node, drop) {
  if (Array.isArray(node)) return node.map((n) => strip(n, drop));
  if (node === null || typeof node !== 'object') return node;
  const out = {};
  for (const [k, v] of Object.entries(node)) if (!drop(k)) out[k] = strip(v, drop);
  return out;
}

/**
 * A CRD's openAPIV3Schema as JSON Schema: kube keywords (`x-kubernetes-*`) dropped (CEL rules
 * and list types are checked in code), and every object with properties closed, as the API
 * server's strict field validation refuses unknown fields (its pruning drops them silently).
 */
function crdSchema(node) {
  if (Array.isArray(node)) return node.map(crdSchema);
  if (node === null || typeof node !== 'object') return node;
  const out = {};
  for (const [k, v] of Object.entries(node)) {
    if (k.startsWith('x-kubernetes-') || k === 'description') continue;
    out[k] = k === 'properties' ? Object.fromEntries(Object.entries(v).map(([p, s]) => [p, crdSchema(s)])) : crdSchema(v);
  }
  if (out.type === 'object' && out.properties !== undefined && out.additionalProperties === undefined) out.additionalProperties = false;
  return out;
}

function crdSchemas(files) {
  const out = {};
  for (const file of files) {
    for (const doc of parseAllDocuments(readFileSync(join(root, file), 'utf8'))) {
      const crd = doc.toJS();
      const version = crd.spec.versions.find((v) => v.storage);
      const schema = crdSchema(version.schema.openAPIV3Schema);
      // status is the controller's own output, written through the API server, which checks it.
      if (schema.properties.status !== undefined) schema.properties.status = { type: 'object' };
      out[crd.spec.names.kind] = schema;
    }
  }
  return out;
}

function generate(ajv, schemas, sources) {
  for (const [name, schema] of Object.entries(schemas)) ajv.addSchema(schema, name);
  const code = standaloneCode(ajv, Object.fromEntries(Object.keys(schemas).map((n) => [n, n])));
  // The module must stand alone (no ajv at run time, nothing for the bundle to resolve).
  if (/\brequire\(/.test(code)) throw new Error(`generated validators for ${sources.join(', ')} need an ajv runtime helper; adjust the schema or OPTIONS`);
  return [
    '/* eslint-disable */',
    `// Generated by bin/gen-validators.mjs from ${sources.join(', ')}; do not edit.`,
    '// Rebuild with `node bin/gen-validators.mjs` (part of `npm run build`) after changing a schema.',
    '// @ts-nocheck',
    code,
    '',
  ].join('\n');
}

const readJson = (file) => strip(JSON.parse(readFileSync(join(root, file), 'utf8')), (k) => k === 'description' || k === '$comment');
// The CRD schemas use OpenAPI formats the API server checks; here they only annotate.
const crdAjv = () => withUniqueItems(new Ajv({ ...OPTIONS, formats: { int32: true, int64: true, 'date-time': true } }));

const targets = [
  ['src/policy/schema-generated.ts', () => generate(withUniqueItems(new Ajv2020(OPTIONS)), { nodePolicy: readJson('policy/node-policy.schema.json') }, ['policy/node-policy.schema.json'])],
  ['src/config/schema-generated.ts', () => generate(withUniqueItems(new Ajv2020(OPTIONS)), { nodeConfig: readJson('policy/node-config.schema.json') }, ['policy/node-config.schema.json'])],
  [
    'src/controller/schema-generated.ts',
    () => generate(crdAjv(), crdSchemas(['deploy/crds/profilebinding.yaml', 'deploy/crds/profilerecording.yaml']), ['deploy/crds/profilebinding.yaml', 'deploy/crds/profilerecording.yaml']),
  ],
];

let stale = 0;
for (const [file, make] of targets) {
  const text = make();
  const path = join(root, file);
  if (!args.check) writeFileSync(path, text);
  else if (readFileSync(path, 'utf8') !== text) {
    process.stderr.write(`${file} does not match its schemas: run node bin/gen-validators.mjs\n`);
    stale++;
  }
}
process.exitCode = stale > 0 ? 1 : 0;
