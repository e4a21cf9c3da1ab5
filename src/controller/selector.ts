// metav1.LabelSelector: validation (the API machinery's rules, reported as messages) and
// matching. matchLabels and matchExpressions are ANDed; an empty selector matches every pod.

import type { LabelSelector } from './types.js';

const NAME_RE = /^[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const PREFIX_RE = /^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*$/;
const VALUE_RE = /^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;
const OPERATORS = ['In', 'NotIn', 'Exists', 'DoesNotExist'];

function keyProblem(key: unknown): string | undefined {
  if (typeof key !== 'string' || key.length === 0) return 'label key must be a non-empty string';
  const slash = key.indexOf('/');
  const name = slash < 0 ? key : key.slice(slash + 1);
  if (slash >= 0) {
    const prefix = key.slice(0, slash);
    if (prefix.length > 253 || !PREFIX_RE.test(prefix)) return `label key ${JSON.stringify(key)}: prefix must be a DNS subdomain`;
  }
  if (!NAME_RE.test(name)) return `label key ${JSON.stringify(key)}: name must be 63 characters or less, alphanumeric with -_. inside`;
  return undefined;
}

function valueProblem(v: unknown): string | undefined {
  if (typeof v !== 'string' || !VALUE_RE.test(v)) return `label value ${JSON.stringify(v)} must be 63 characters or less, alphanumeric with -_. inside`;
  return undefined;
}

/** Problems with a selector, each prefixed with `path`; empty when valid. */
export function selectorProblems(sel: unknown, path: string): string[] {
  const out: string[] = [];
  if (sel === null || typeof sel !== 'object' || Array.isArray(sel)) return [`${path}: must be an object`];
  for (const k of Object.keys(sel)) {
    if (k !== 'matchLabels' && k !== 'matchExpressions') out.push(`${path}: unknown field ${JSON.stringify(k)}`);
  }
  const s = sel as { matchLabels?: unknown; matchExpressions?: unknown };
  if (s.matchLabels !== undefined) {
    if (s.matchLabels === null || typeof s.matchLabels !== 'object' || Array.isArray(s.matchLabels)) out.push(`${path}.matchLabels: must be a map of strings`);
    else {
      for (const [k, v] of Object.entries(s.matchLabels)) {
        const p = keyProblem(k) ?? valueProblem(v);
        if (p) out.push(`${path}.matchLabels: ${p}`);
      }
    }
  }
  if (s.matchExpressions !== undefined) {
    if (!Array.isArray(s.matchExpressions)) out.push(`${path}.matchExpressions: must be a list`);
    else {
      s.matchExpressions.forEach((e: unknown, i: number) => {
        const p = `${path}.matchExpressions[${i}]`;
        if (e === null || typeof e !== 'object') return void out.push(`${p}: must be an object`);
        const r = e as { key?: unknown; operator?: unknown; values?: unknown };
        const kp = keyProblem(r.key);
        if (kp) out.push(`${p}: ${kp}`);
        if (typeof r.operator !== 'string' || !OPERATORS.includes(r.operator)) {
          out.push(`${p}.operator: must be one of ${OPERATORS.join(', ')}`);
          return;
        }
        const values = r.values;
        if (values !== undefined && !Array.isArray(values)) return void out.push(`${p}.values: must be a list`);
        const n = Array.isArray(values) ? values.length : 0;
        if ((r.operator === 'In' || r.operator === 'NotIn') && n === 0) out.push(`${p}.values: must be non-empty for ${r.operator}`);
        if ((r.operator === 'Exists' || r.operator === 'DoesNotExist') && n > 0) out.push(`${p}.values: must be empty for ${r.operator}`);
        for (const v of (values as unknown[] | undefined) ?? []) {
          const vp = valueProblem(v);
          if (vp) out.push(`${p}.values: ${vp}`);
        }
      });
    }
  }
  return out;
}

/** True when the selector has at least one requirement (an empty selector selects everything). */
export function selectorIsRestrictive(sel: LabelSelector | undefined): boolean {
  if (sel === undefined) return false;
  return Object.keys(sel.matchLabels ?? {}).length > 0 || (sel.matchExpressions ?? []).length > 0;
}

export function selectorMatches(sel: LabelSelector | undefined, labels: Record<string, string> | undefined): boolean {
  if (sel === undefined) return true;
  const l = labels ?? {};
  const has = (k: string) => Object.prototype.hasOwnProperty.call(l, k);
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) {
    if (!has(k) || l[k] !== v) return false;
  }
  for (const e of sel.matchExpressions ?? []) {
    const present = has(e.key);
    const values = e.values ?? [];
    switch (e.operator) {
      case 'In':
        if (!present || !values.includes(l[e.key] as string)) return false;
        break;
      case 'NotIn':
        if (present && values.includes(l[e.key] as string)) return false;
        break;
      case 'Exists':
        if (!present) return false;
        break;
      case 'DoesNotExist':
        if (present) return false;
        break;
      default:
        return false; // unknown operators select nothing (validation refuses them)
    }
  }
  return true;
}
