// Strict YAML reading with line numbers, for files a node admin writes by hand (the policy and
// the node config). Every error names the file, the line and the field at fault:
// `<file>:<line>: <field>: <what>`. Anchors, aliases, custom tags and duplicate keys are refused:
// the file must say what it means in one readable place. Pure: takes text, does no I/O.

import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Node, type Pair, type Scalar, type YAMLMap, type YAMLSeq } from 'yaml';
import { SpokeError, type ErrorReason } from '../core/errors.js';

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

/** A parsed file: the root node and a way to turn nodes into `file:line` errors. */
export class YamlSource {
  readonly file: string;
  private readonly lines: LineCounter;

  private constructor(
    file: string,
    lines: LineCounter,
    private readonly reason: FileReason,
  ) {
    this.file = file;
    this.lines = lines;
  }

  /** Parses `text`; returns the root node (undefined for an empty document) or throws at the line at fault. */
  static parse(text: string, file: string, reason: FileReason): { source: YamlSource; root: Node | undefined } {
    const lines = new LineCounter();
    const source = new YamlSource(file, lines, reason);
    if (text.length > MAX_YAML_BYTES) source.failAt(1, '(file)', `larger than ${MAX_YAML_BYTES} bytes`);
    const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false, version: '1.2', merge: false });
    const problem = doc.errors[0] ?? doc.warnings[0];
    if (problem !== undefined) {
      const line = problem.linePos?.[0].line ?? lines.linePos(problem.pos[0]).line;
      source.failAt(line, '(yaml)', firstLine(problem.message));
    }
    const root = (doc.contents ?? undefined) as Node | undefined;
    if (root !== undefined && isScalar(root) && root.value === null) return { source, root: undefined };
    return { source, root };
  }

  /** 1-based line where `node` starts (line 1 when the node has no position). */
  lineOf(node: Node | Pair | undefined | null): number {
    const range = node && 'range' in node ? node.range : undefined;
    if (!range) return 1;
    return this.lines.linePos(range[0]).line;
  }

  failAt(line: number, path: string, what: string): never {
    const field = path === '' ? '(document)' : path;
    throw new SpokeError('InvalidArgument', `${this.file}:${line}: ${field}: ${what}`, { file: this.file, line, path: field }, { reason: this.reason });
  }

  fail(node: Node | Pair | undefined | null, path: string, what: string): never {
    return this.failAt(this.lineOf(node), path, what);
  }

  /**
   * A mapping whose keys are all in `allowed`; returns the entries by key, in file order.
   * `owner` (the key the mapping is the value of) is where errors about the whole mapping point.
   */
  map(node: Node | undefined, path: string, allowed: readonly string[] | 'any', owner?: Node): MapView {
    if (node === undefined || !isMap(node)) this.fail(node ?? owner, path, `must be a mapping${describe(node)}`);
    this.noAlias(node, path);
    const entries = new Map<string, Entry>();
    for (const pair of (node as YAMLMap<unknown, unknown>).items) {
      const keyNode = pair.key as Node | null;
      if (!isScalar(keyNode) || typeof keyNode.value !== 'string') this.fail(keyNode ?? node, path, 'keys must be plain strings');
      const key = keyNode.value as string;
      const childPath = path === '' ? key : `${path}.${key}`;
      if (allowed !== 'any' && !allowed.includes(key)) {
        this.fail(keyNode, childPath, `unknown key (allowed: ${allowed.join(', ')})`);
      }
      const value = (pair.value ?? undefined) as Node | undefined;
      entries.set(key, { key, keyNode, value, line: this.lineOf(value ?? keyNode), path: childPath });
    }
    return new MapView(this, owner ?? (node as YAMLMap), path, entries);
  }

  seq(node: Node | undefined, path: string): { node: Node; path: string; line: number }[] {
    if (node === undefined || !isSeq(node)) this.fail(node, path, `must be a list${describe(node)}`);
    this.noAlias(node, path);
    return (node as YAMLSeq<unknown>).items.map((item, i) => {
      const child = item as Node;
      return { node: child, path: `${path}[${i}]`, line: this.lineOf(child) };
    });
  }

  string(node: Node | undefined, path: string, opts: { maxLength?: number } = {}): string {
    const value = this.scalar(node, path);
    if (typeof value !== 'string') this.fail(node, path, `must be a string${describe(node)}`);
    if (value.length === 0) this.fail(node, path, 'must not be empty');
    const max = opts.maxLength ?? 4096;
    if (value.length > max) this.fail(node, path, `longer than ${max} characters`);
    return value;
  }

  stringList(node: Node | undefined, path: string, opts: { maxItems?: number; maxLength?: number; nonEmpty?: boolean } = {}) {
    const items = this.seq(node, path);
    if (opts.nonEmpty && items.length === 0) this.fail(node, path, 'must not be empty');
    const max = opts.maxItems ?? 1024;
    if (items.length > max) this.fail(node, path, `more than ${max} entries`);
    return items.map((item) => ({ ...item, value: this.string(item.node, item.path, opts) }));
  }

  boolean(node: Node | undefined, path: string): boolean {
    const value = this.scalar(node, path);
    if (typeof value !== 'boolean') this.fail(node, path, `must be true or false${describe(node)}`);
    return value;
  }

  integer(node: Node | undefined, path: string, min: number, max: number): number {
    const value = this.scalar(node, path);
    if (typeof value !== 'number' || !Number.isSafeInteger(value)) this.fail(node, path, `must be an integer${describe(node)}`);
    if (value < min || value > max) this.fail(node, path, `must be between ${min} and ${max}, got ${value}`);
    return value;
  }

  private scalar(node: Node | undefined, path: string): unknown {
    this.noAlias(node, path);
    if (node === undefined || !isScalar(node)) this.fail(node, path, `must be a single value${describe(node)}`);
    return (node as Scalar).value;
  }

  private noAlias(node: Node | undefined, path: string): void {
    if (node !== undefined && (isAlias(node) || (node as { anchor?: string }).anchor !== undefined)) {
      this.fail(node, path, 'anchors and aliases are not supported; write the value out');
    }
  }
}

export interface Entry {
  readonly key: string;
  readonly keyNode: Node;
  readonly value: Node | undefined;
  /** Line of the value (or of the key when the value is empty). */
  readonly line: number;
  readonly path: string;
}

/** The entries of one mapping, with helpers that keep the path for errors. */
export class MapView {
  constructor(
    private readonly source: YamlSource,
    /** Where errors about the whole mapping point: its owning key, or the mapping itself. */
    readonly node: Node,
    readonly path: string,
    readonly entries: ReadonlyMap<string, Entry>,
  ) {}

  get(key: string): Entry | undefined {
    return this.entries.get(key);
  }

  /** The entry for `key`, or an error at the mapping's line saying it is missing. */
  require(key: string, why = ''): Entry {
    const entry = this.entries.get(key);
    if (entry === undefined) this.source.fail(this.node, this.path === '' ? key : `${this.path}.${key}`, `required${why}`);
    return entry;
  }
}

function describe(node: Node | undefined): string {
  if (node === undefined || (isScalar(node) && node.value === null)) return ', got nothing';
  if (isMap(node)) return ', got a mapping';
  if (isSeq(node)) return ', got a list';
  if (isScalar(node)) return `, got ${JSON.stringify(node.value)?.slice(0, 60) ?? typeof node.value}`;
  return '';
}

function firstLine(message: string): string {
  return message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
}
