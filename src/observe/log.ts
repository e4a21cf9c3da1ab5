// Structured JSON logs, one object per line: {"time","level","msg",...fields}. Implements the
// core Logger. Fields are copied as given except secrets, which never belong in a log: values of
// keys that look like credentials are replaced.

import type { LogLevel, Logger } from '../core/runtime.js';

const ORDER: Readonly<Record<LogLevel, number>> = { debug: 10, info: 20, warn: 30, error: 40 };
const SECRET_KEY = /pass(word)?|secret|token|authorization|^auth$|credential/i;

export interface JsonLoggerOptions {
  level?: LogLevel;
  /** Where lines go; default process.stderr. */
  write?: (line: string) => void;
  /** Fields added to every line (e.g. component). */
  base?: Record<string, unknown>;
  now?: () => number;
}

export class JsonLogger implements Logger {
  private threshold: number;
  private readonly write: (line: string) => void;
  private readonly base: Record<string, unknown>;
  private readonly now: () => number;

  constructor(opts: JsonLoggerOptions = {}) {
    this.threshold = ORDER[opts.level ?? 'info'];
    this.write = opts.write ?? ((line) => process.stderr.write(line));
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
    const rec: Record<string, unknown> = { time: new Date(this.now()).toISOString(), level, msg, ...this.base };
    if (fields) {
      for (const [k, v] of Object.entries(fields)) {
        if (v === undefined) continue;
        rec[k] = SECRET_KEY.test(k) ? '[redacted]' : v instanceof Error ? v.message : v;
      }
    }
    let line: string;
    try {
      line = JSON.stringify(rec);
    } catch {
      line = JSON.stringify({ time: rec.time, level, msg, note: 'fields not serialisable' });
    }
    this.write(line + '\n');
  }
}

export function isLogLevel(s: string): s is LogLevel {
  return s in ORDER;
}
