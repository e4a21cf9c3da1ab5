// metav1.LabelSelector: validation (the API machinery's rules, reported as messages) and
// matching. matchLabels and matchExpressions are ANDed; an empty selector matches every pod.

import { isDnsSubdomain } from '../core/namespace.js';
import type { LabelSelector } from './types.js';

const NAME_RE = /^[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const VALUE_RE = /^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

function keyProblem(key: string): string | undefined {
  const slash = key.indexOf('/');
  const name = slash < 0 ? key : key.slice(slash + 1);
  if (slash >= 0) {
    const prefix = key.slice(0, slash);
    if (!isDnsSubdomain(prefix)) return `label key ${JSON.stringify(key)}: prefix must be a DNS subdomain`;
  }
  if (!NAME_RE.test(name)) return `label key ${JSON.stringify(key)}: name must be 63 characters or less, alphanumeric with -_. inside`;
  return undefined;
}

function valueProblem(v: string): string | undefined {
  if (!VALUE_RE.test(v)) return `label value ${JSON.stringify(v)} must be 63 characters or less, alphanumeric with -_. inside`;
  return undefined;
}

/**
 * Problems with a selector the CRD schemas cannot state (label key and value syntax, values
 * per operator), each prefixed with `path`; empty when valid. Its shape (fields, types,
 * operators, bounds) is the CRD schema's, checked before (schema.ts).
 */
export function selectorProblems(sel: LabelSelector, path: string): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) {
    const p = keyProblem(k) ?? valueProblem(v);
    if (p) out.push(`${path}.matchLabels: ${p}`);
  }
  (sel.matchExpressions ?? []).forEach((e, i) => {
    const p = `${path}.matchExpressions[${i}]`;
    const kp = keyProblem(e.key);
    if (kp) out.push(`${p}: ${kp}`);
    const n = e.values?.length ?? 0;
    if ((e.operator === 'In' || e.operator === 'NotIn') && n === 0) out.push(`${p}.values: must be non-empty for ${e.operator}`);
    if ((e.operator === 'Exists' || e.operator === 'DoesNotExist') && n > 0) out.push(`${p}.values: must be empty for ${e.operator}`);
    for (const v of e.values ?? []) {
      const vp = valueProblem(v);
      if (vp) out.push(`${p}.values: ${vp}`);
    }
  });
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
