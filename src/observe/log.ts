// Structured JSON logs, one object per line: {"time","level","msg",...fields}. Implements the
// core Logger. Fields are copied as given except secrets, which never belong in a log: values of
// keys that look like credentials are replaced; and a string longer than MAX_LOGGED_FIELD_CHARS
// is cut: fields often carry what a client sent (a reference, a namespace), which may be megabytes.

import type { LogLevel, Logger } from '../core/runtime.js';

const ORDER: Readonly<Record<LogLevel, number>> = { debug: 10, info: 20, warn: 30, error: 40 };
const SECRET_KEY = /pass(word)?|secret|token|authorization|^auth$|credential/i;

/** Key → whether its value is redacted (the set of keys in use is small and fixed). */
const secretKeys = new Map<string, boolean>();
function isSecretKey(k: string): boolean {
  let v = secretKeys.get(k);
  if (v === undefined) {
    v = SECRET_KEY.test(k);
    if (secretKeys.size < 1024) secretKeys.set(k, v);
  }
  return v;
}

// The default sink: stderr, written in batches off the request path. A line logged while a call
// is handled is formatted and written two turns of the event loop later, after the HTTP/2 writes
// of that call (the response, then its trailers, which node:http2 sends one turn later; a
// forwarded create's request, while the runtime works on it) instead of before them; whatever is
// pending is written synchronously when the process exits. A line whose fields are all short
// strings, numbers and booleans is formatted then; any other is formatted at once (JsonLogger.log).
let pending: (() => string)[] = [];
let flushScheduled = false;
let exitHooked = false;
const MAX_PENDING_LINES = 256;

/** The longest string a field keeps; the rest is replaced by a note of how much was left out. */
export const MAX_LOGGED_FIELD_CHARS = 2048;

function bounded(v: unknown): unknown {
  const s = v instanceof Error ? v.message : v;
  if (typeof s !== 'string' || s.length <= MAX_LOGGED_FIELD_CHARS) return s;
  return `${s.slice(0, MAX_LOGGED_FIELD_CHARS)}…(${s.length - MAX_LOGGED_FIELD_CHARS} more characters)`;
}

function flushPending(): void {
  flushScheduled = false;
  if (pending.length === 0) return;
  const lines = pending;
  pending = [];
  process.stderr.write(lines.length === 1 ? lines[0]!() : lines.map((line) => line()).join(''));
}

function flushNextTurn(): void {
  setImmediate(flushPending);
}

function writeDeferred(line: () => string): void {
  pending.push(line);
  if (!exitHooked) {
    exitHooked = true;
    process.on('exit', flushPending);
  }
  if (pending.length >= MAX_PENDING_LINES) {
    flushPending();
    return;
  }
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flushNextTurn);
  }
}

/** Writes what the default sink holds now (tests, and before handing stderr to someone else). */
export function flushLogs(): void {
  flushPending();
}

/** Whether every field is a number, a boolean, null, undefined or a string within the bound. */
function onlyShortValues(fields: Record<string, unknown>): boolean {
  for (const k in fields) {
    const v = fields[k];
    if (v === null || v === undefined || typeof v === 'number' || typeof v === 'boolean') continue;
    if (typeof v !== 'string' || v.length > MAX_LOGGED_FIELD_CHARS) return false;
  }
  return true;
}

export interface JsonLoggerOptions {
  level?: LogLevel;
  /** Where lines go, each as it is logged; default process.stderr (batched, see writeDeferred). */
  write?: (line: string) => void;
  /** Fields added to every line (e.g. component). */
  base?: Record<string, unknown>;
  now?: () => number;
}

export class JsonLogger implements Logger {
  private threshold: number;
  /** undefined: the default sink. */
  private readonly write: ((line: string) => void) | undefined;
  private readonly base: Record<string, unknown>;
  private readonly now: () => number;

  constructor(opts: JsonLoggerOptions = {}) {
    this.threshold = ORDER[opts.level ?? 'info'];
    this.write = opts.write;
    this.base = opts.base ?? {};
    this.now = opts.now ?? Date.now;
  }

  setLevel(level: LogLevel): void {
    this.threshold = ORDER[level];
  }

  enabled(level: LogLevel): boolean {
    return ORDER[level] >= this.threshold;
  }

  log(level: LogLevel, msg: string, fields?: Record<string, unknown>): void {
    if (ORDER[level] < this.threshold) return;
    const time = this.now();
    if (this.write !== undefined) this.write(this.format(time, level, msg, fields));
    else if (fields === undefined || onlyShortValues(fields)) writeDeferred(() => this.format(time, level, msg, fields));
    // An object may change before the sink writes, and a long string would be kept whole until
    // then (a client's megabytes, cut to MAX_LOGGED_FIELD_CHARS only when formatted): now.
    else {
      const line = this.format(time, level, msg, fields);
      writeDeferred(() => line);
    }
  }

  private format(time: number, level: LogLevel, msg: string, fields: Record<string, unknown> | undefined): string {
    const rec: Record<string, unknown> = { time: new Date(time).toISOString(), level, msg, ...this.base };
    if (fields) {
      for (const [k, v] of Object.entries(fields)) {
        if (v === undefined) continue;
        rec[k] = isSecretKey(k) ? '[redacted]' : bounded(v);
      }
    }
    let line: string;
    try {
      line = JSON.stringify(rec);
    } catch {
      line = JSON.stringify({ time: rec.time, level, msg, note: 'fields not serialisable' });
    }
    return line + '\n';
  }
}

export function isLogLevel(s: string): s is LogLevel {
  return s in ORDER;
}
