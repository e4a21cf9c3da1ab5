// Just enough of systemd's unit-file rules (systemd.syntax(7), systemd.service(5),
// systemd.exec(5)) to tell what command line a unit and its drop-ins give a service, without a
// running systemd: none runs in these tests.

export interface Assignment {
  section: string;
  key: string;
  value: string;
  line: number;
}

/** The assignments of one unit file in order; comments and blank lines dropped, continuations joined. */
export function parseUnitFile(text: string): Assignment[] {
  const out: Assignment[] = [];
  let section = '';
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const start = i;
    let line = lines[i]!.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    while (line.endsWith('\\') && i + 1 < lines.length) line = line.slice(0, -1) + ' ' + lines[++i]!.trim();
    const header = /^\[([^\]]+)\]$/.exec(line);
    if (header) {
      section = header[1]!;
      continue;
    }
    const eq = line.indexOf('=');
    if (eq <= 0) throw new Error(`line ${start + 1}: not an assignment: ${line}`);
    out.push({ section, key: line.slice(0, eq).trim(), value: line.slice(eq + 1).trim(), line: start + 1 });
  }
  return out;
}

/** Splits `text` into words the way systemd does: whitespace separates, "…" and '…' group. */
export function splitWords(text: string): string[] {
  const words: string[] = [];
  let word: string | undefined;
  let quote: string | undefined;
  for (const ch of text) {
    if (quote !== undefined) {
      if (ch === quote) quote = undefined;
      else word += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      word ??= '';
    } else if (/\s/.test(ch)) {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else word = (word ?? '') + ch;
  }
  if (quote !== undefined) throw new Error(`unterminated quote in ${text}`);
  if (word !== undefined) words.push(word);
  return words;
}

/** KEY=VALUE lines of an EnvironmentFile (quotes around a value removed). */
export function parseEnvironmentFile(text: string): Map<string, string> {
  const env = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const value = line.slice(eq + 1).trim();
    env.set(line.slice(0, eq).trim(), /^(["']).*\1$/.test(value) ? value.slice(1, -1) : value);
  }
  return env;
}

export interface UnitFile {
  /** The file name: drop-ins apply in the order of their names, whatever their directory. */
  name: string;
  text: string;
}

export interface ServiceCommand {
  /** The ExecStart= lines left once every file is applied (a simple service allows one). */
  execStart: string[];
  /** argv of the single ExecStart, variables expanded as systemd expands them. */
  argv: string[];
}

/**
 * What `unit` plus `dropIns` run: ExecStart=, Environment= and EnvironmentFile= of [Service],
 * with an empty assignment resetting the list, drop-ins sorted by file name, variables from
 * EnvironmentFile= overriding those of Environment=, `$VAR` as a word of its own split at
 * whitespace and `${VAR}` substituted in place. `files` are the contents of environment files.
 */
export function serviceCommand(unit: UnitFile, dropIns: UnitFile[], files: Record<string, string>): ServiceCommand {
  const ordered = [unit, ...[...dropIns].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))];
  let execStart: string[] = [];
  let environment: string[] = [];
  let environmentFiles: string[] = [];
  for (const file of ordered) {
    for (const a of parseUnitFile(file.text)) {
      if (a.section !== 'Service') continue;
      if (a.key === 'ExecStart') execStart = a.value === '' ? [] : [...execStart, a.value];
      else if (a.key === 'Environment') environment = a.value === '' ? [] : [...environment, ...splitWords(a.value)];
      else if (a.key === 'EnvironmentFile') environmentFiles = a.value === '' ? [] : [...environmentFiles, a.value];
    }
  }
  const env = new Map<string, string>();
  for (const assignment of environment) {
    const eq = assignment.indexOf('=');
    env.set(assignment.slice(0, eq), assignment.slice(eq + 1));
  }
  for (const spec of environmentFiles) {
    const optional = spec.startsWith('-');
    const path = optional ? spec.slice(1) : spec;
    const text = files[path];
    if (text === undefined) {
      if (optional) continue;
      throw new Error(`EnvironmentFile ${path} is missing`);
    }
    for (const [k, v] of parseEnvironmentFile(text)) env.set(k, v);
  }
  const argv: string[] = [];
  if (execStart.length === 1) {
    for (const word of splitWords(execStart[0]!.replace(/^[-@:+!]+/, ''))) {
      const whole = /^\$([A-Za-z_][A-Za-z0-9_]*)$/.exec(word);
      if (whole) argv.push(...splitWords(env.get(whole[1]!) ?? ''));
      else argv.push(word.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => env.get(name) ?? ''));
    }
  }
  return { execStart, argv };
}

/**
 * The value a Go pflag command line leaves for each `--name` flag: the last one given wins,
 * as `--name=value` or `--name value`.
 */
export function lastFlagValue(argv: readonly string[], name: string): string | undefined {
  let value: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg.startsWith(`--${name}=`)) value = arg.slice(name.length + 3);
    else if (arg === `--${name}` && i + 1 < argv.length) value = argv[++i];
  }
  return value;
}
