// Strict YAML reading with line numbers, for files a node admin writes by hand (the policy and
// the node config), checked against their shipped schema (schema.ts). Every error names the
// file, the line and the field at fault: `<file>:<line>: <field>: <what>`; a schema error's
// JSON pointer is mapped back to the YAML node it came from. Anchors, aliases, custom tags,
// duplicate and non-string keys are refused: the file must say what it means in one readable
// place. Pure: takes text, does no I/O.

import { isAlias, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, visit, type Node, type Pair } from 'yaml';
import { SpokeError, type ErrorReason } from '../core/errors.js';
import { formatPath, schemaProblem, type Segment, type SchemaValidator } from './schema.js';

/** What a malformed file is: the node policy or the node config. */
export type FileReason = Extract<ErrorReason, 'POLICY_INVALID' | 'CONFIG_INVALID'>;

/** Bound on file size before the parser runs; policies and configs are small. */
export const MAX_YAML_BYTES = 1024 * 1024;

/** Bytes of a hand-written file → text; invalid UTF-8 is an error at line 1 (a leading BOM is dropped). */
export function decodeText(bytes: Uint8Array, file: string, reason: FileReason = 'POLICY_INVALID'): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new SpokeError('InvalidArgument', `${file}:1: (document): not valid UTF-8`, { file, line: 1, path: '(document)' }, { reason });
  }
}

/** A parsed file: its data as plain JSON values, and a way to turn a field's path into a `file:line` error. */
export class YamlFile {
  private constructor(
    readonly file: string,
    private readonly lines: LineCounter,
    private readonly root: Node | undefined,
    private readonly reason: FileReason,
    /** The document as JSON values; undefined for an empty document. */
    readonly data: unknown,
  ) {}

  /**
   * Parses `text` and validates it against `schema`, or throws at the line at fault. An empty
   * document is validated as null, unless `emptyOk` (data undefined: a file of defaults).
   */
  static load(text: string, file: string, reason: FileReason, schema: SchemaValidator, emptyOk = false): YamlFile {
    const lines = new LineCounter();
    const fail = (line: number, path: string, what: string): never => failAt(file, reason, line, path, what);
    if (text.length > MAX_YAML_BYTES) fail(1, '(file)', `larger than ${MAX_YAML_BYTES} bytes`);
    const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false, version: '1.2', merge: false });
    const problem = doc.errors[0] ?? doc.warnings[0];
    if (problem !== undefined) fail(problem.linePos?.[0].line ?? lines.linePos(problem.pos[0]).line, '(yaml)', firstLine(problem.message));
    // A %YAML directive overrides the version asked for: under 1.1, `on` is true and 0100000 octal.
    if (doc.directives?.yaml.version !== '1.2') fail(1, '(yaml)', `only YAML 1.2 is read, not ${doc.directives?.yaml.version ?? 'another version'}: remove the %YAML directive`);
    let root = (doc.contents ?? undefined) as Node | undefined;
    if (root !== undefined && isScalar(root) && root.value === null) root = undefined;
    // Before toJS, which would expand aliases.
    if (root !== undefined) refuseIndirection(root, (node, path, what) => fail(node.range ? lines.linePos(node.range[0]).line : 1, formatPath(path), what));
    const loaded = new YamlFile(file, lines, root, reason, root === undefined ? undefined : doc.toJS());
    if (root === undefined && emptyOk) return loaded;
    const found = schemaProblem(schema, loaded.data ?? null);
    if (found !== undefined) loaded.fail(found.path, found.what, { atKey: found.atKey, atParent: found.atParent });
    return loaded;
  }

  /**
   * 1-based line of the field at `path`: its value, or its key with `atKey`; with `atParent`
   * (a field that is missing), the key its parent is the value of, or the parent itself.
   */
  lineOf(path: readonly Segment[], opts: { atKey?: boolean; atParent?: boolean } = {}): number {
    const { node, key } = this.locate(opts.atParent ? path.slice(0, -1) : path);
    const at = opts.atKey || opts.atParent ? (key ?? node) : (node ?? key);
    const range = at?.range;
    return range ? this.lines.linePos(range[0]).line : 1;
  }

  /** Throws the file's error for the field at `path`. */
  fail(path: readonly Segment[], what: string, opts: { atKey?: boolean; atParent?: boolean } = {}): never {
    return failAt(this.file, this.reason, this.lineOf(path, opts), formatPath(path), what);
  }

  /** As `fail`, at a line already known (key material read for a signer). */
  failAt(line: number, path: readonly Segment[], what: string): never {
    return failAt(this.file, this.reason, line, formatPath(path), what);
  }

  /** The node at `path` and the key node it is the value of, as far as the path goes. */
  private locate(path: readonly Segment[]): { node: Node | undefined; key: Node | undefined } {
    let node = this.root;
    let key: Node | undefined;
    for (const seg of path) {
      if (isMap(node)) {
        const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
        if (pair === undefined) break;
        key = pair.key as Node;
        node = (pair.value ?? undefined) as Node | undefined;
      } else if (isSeq(node) && typeof seg === 'number' && seg < node.items.length) {
        key = undefined;
        node = node.items[seg] as Node;
      } else break;
    }
    return { node, key };
  }
}

/** Anchors, aliases and keys that are not plain strings have no place in a file read by people. */
function refuseIndirection(root: Node, fail: (node: Node, path: Segment[], what: string) => never): void {
  visit(root, (_key, node, ancestry) => {
    const path = pathOf(ancestry, node);
    if (isAlias(node) || ((isMap(node) || isSeq(node) || isScalar(node)) && node.anchor !== undefined)) {
      fail(node as Node, path, 'anchors and aliases are not supported; write the value out');
    }
    if (isPair(node) && (!isScalar(node.key) || typeof node.key.value !== 'string')) {
      fail((node.key ?? root) as Node, path, 'keys must be plain strings');
    }
  });
}

/** The path of `node` from the ancestry `visit` gives (pairs contribute their key). */
function pathOf(ancestry: readonly unknown[], node: unknown): Segment[] {
  const chain = [...ancestry, node];
  const out: Segment[] = [];
  for (let i = 1; i < chain.length; i++) {
    const parent = chain[i - 1];
    const child = chain[i];
    if (isSeq(parent)) out.push(parent.items.indexOf(child as Node));
    else if (isPair(child) && isScalar((child as Pair).key)) out.push(String(((child as Pair).key as { value: unknown }).value));
  }
  return out;
}

function failAt(file: string, reason: FileReason, line: number, path: string, what: string): never {
  throw new SpokeError('InvalidArgument', `${file}:${line}: ${path}: ${what}`, { file, line, path }, { reason });
}

function firstLine(message: string): string {
  return message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
}
