// Keeps the documentation honest (docs/testing.md): comments in src/, test/ and the other
// shipped files (bin/, deploy/, policy/, proto/, the dependency rules) cite only documents that
// ship with the repository (docs/…, README) or public specs; the README and docs/ name only
// deploy/ files that ship; the README stays a front door; and every error code and reason is
// explained in docs/troubleshooting.md.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ERROR_CODES, ERROR_REASONS } from '../../src/core/errors.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const SELF = join('test', 'unit', 'docs.test.ts');
const README_MAX_LINES = 250;

/** Source files under `dir` (relative to the repository root), this file excluded. */
function sources(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sources(path));
    else if (/\.(ts|js|mjs|cjs|sh|ya?ml|json|proto)$/.test(entry.name) && path !== SELF) out.push(path);
  }
  return out;
}

interface Hit {
  where: string;
  text: string;
}

/** Every match of `pattern` in `files`, as `file:line`. */
function findAll(files: string[], pattern: RegExp): Hit[] {
  const hits: Hit[] = [];
  for (const file of files) {
    const lines = readFileSync(join(ROOT, file), 'utf8').split('\n');
    lines.forEach((line, i) => {
      for (const m of line.matchAll(pattern)) hits.push({ where: `${file}:${i + 1}`, text: m[0] });
    });
  }
  return hits;
}

const show = (hits: Hit[]) => hits.map((h) => `${h.where}: ${h.text}`).join('\n');

const FILES = [...['src', 'test', 'bin', 'deploy', 'policy', 'proto'].flatMap(sources), '.dependency-cruiser.cjs'];

// Documents that never shipped with the repository: the design brief, its reference notes, and
// issue numbers of a tracker that is not public.
const OUTSIDE = [
  /\bissues? #?\d+/gi,
  /\bDESIGN(?:\.md| §)/g,
  /\/work\/shared/g,
  /\breference\/[\w.-]+\.md\b/g,
  /(?<![\w/-])(?:kep6061|e2e-feasibility|signing-policy|users-perf|style-anchors|spo-crio|ebpf-recording)\.md\b/g,
];

describe('citations in src/, test/ and the other shipped files', () => {
  it('the file walk sees the source tree', () => {
    assert.ok(FILES.includes(join('src', 'pull.ts')), 'src/pull.ts not found: the walk is broken');
    assert.ok(FILES.includes(join('test', 'helpers', 'registry.ts')));
    assert.ok(!FILES.includes(SELF));
  });

  it('never cite issue numbers, the design brief or its reference notes', () => {
    const hits = OUTSIDE.flatMap((p) => findAll(FILES, p));
    assert.equal(hits.length, 0, `cite docs/… (or a public spec) instead:\n${show(hits)}`);
  });

  it('cite only docs/ pages that exist', () => {
    const cited = findAll(FILES, /(?<![\w/.-])docs\/[\w./-]*[\w-]\.md\b/g);
    assert.ok(cited.length > 0, 'no docs/ citation found at all: the pattern is broken');
    const missing = cited.filter((h) => !existsSync(join(ROOT, h.text)));
    assert.equal(missing.length, 0, `cited but not in docs/:\n${show(missing)}`);
  });

  it('cite README sections by a heading the README has', () => {
    const headings = new Set(
      readFileSync(join(ROOT, 'README.md'), 'utf8')
        .split('\n')
        .filter((l) => l.startsWith('#'))
        .map((l) => l.replace(/^#+\s*/, '').trim()),
    );
    const cited = findAll(FILES, /\bREADME(?:\.md)?,? "([^"]+)"/g);
    const missing = cited.filter((h) => !headings.has(/"([^"]+)"/.exec(h.text)![1]!));
    assert.equal(missing.length, 0, `no such README heading:\n${show(missing)}`);
  });
});

describe('the README and docs/ name deploy/ files that ship', () => {
  const pages = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter((n) => n.endsWith('.md')).map((n) => join('docs', n))];

  it('every deploy/ path they name exists', () => {
    // A glob (deploy/crds/*.yaml) counts by its directory.
    const cited = findAll(pages, /(?<![\w/.-])deploy\/[\w./-]*/g).map((h) => ({ ...h, text: h.text.replace(/[.]+$/, '') }));
    assert.ok(cited.some((h) => h.where.startsWith('README.md')), 'the README names no deploy/ file: the pattern is broken');
    const missing = cited.filter((h) => !existsSync(join(ROOT, h.text)));
    assert.equal(missing.length, 0, `named but not in deploy/:\n${show(missing)}`);
  });
});

describe('the README is a front door', () => {
  it(`has at most ${README_MAX_LINES} lines and links the docs index`, () => {
    const text = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const lines = text.split('\n').length - (text.endsWith('\n') ? 1 : 0);
    assert.ok(lines <= README_MAX_LINES, `README.md has ${lines} lines; move details to docs/`);
    assert.ok(text.includes('(docs/README.md)'), 'README.md does not link docs/README.md');
  });
});

describe('docs/troubleshooting.md', () => {
  const page = readFileSync(join(ROOT, 'docs', 'troubleshooting.md'), 'utf8');
  // A row of a table whose first cell is the name, so a mention in passing does not count.
  const row = (name: string) => new RegExp(`^\\| \`${name}\` \\|`, 'm').test(page);

  it('explains every error code', () => {
    const missing = ERROR_CODES.filter((c) => !row(c));
    assert.deepEqual(missing, []);
  });

  it('explains every error reason', () => {
    const missing = ERROR_REASONS.filter((r) => !row(r));
    assert.deepEqual(missing, []);
  });
});
