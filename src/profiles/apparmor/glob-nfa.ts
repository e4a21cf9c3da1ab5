// The Thompson NFA behind glob.ts: built from the parsed pattern, matched without backtracking
// (linear in pattern × name), and walked for the components a pattern spells.

export type ByteSet = Uint8Array; // 256 entries, 1 = member

/** A parsed pattern. `only`: the one byte a set holds, -1 when it holds several (read by spellsOddComponent). */
export type Node = { t: 'byte'; set: ByteSet; only: number } | { t: 'star'; set: ByteSet } | { t: 'alt'; alts: Node[][] };

// Thompson NFA: state k is either a byte test (set, next) or an epsilon fan-out.
interface State {
  set?: ByteSet;
  only?: number;
  /** The fan-out of a star (its loop and its exit). */
  star?: true;
  next: number[]; // byte state: one successor; split state: any number
}

function build(nodes: readonly Node[], states: State[], next: number): number {
  let cur = next;
  for (let k = nodes.length - 1; k >= 0; k--) {
    const node = nodes[k]!;
    if (node.t === 'byte') {
      states.push({ set: node.set, only: node.only, next: [cur] });
      cur = states.length - 1;
    } else if (node.t === 'star') {
      const split: State = { next: [], star: true };
      states.push(split);
      const splitIdx = states.length - 1;
      states.push({ set: node.set, only: -1, next: [splitIdx] });
      split.next.push(states.length - 1, cur);
      cur = splitIdx;
    } else {
      const starts = node.alts.map((a) => build(a, states, cur));
      states.push({ next: starts });
      cur = states.length - 1;
    }
  }
  return cur;
}

const MATCH = 0;

/** A bound on matching work shared by many matches (one merge): state visits left. */
export interface MatchBudget {
  left: number;
}

// The shared budget ran out; intersect.ts (withinBudget) is the one place that turns it into a
// SpokeError (LIMIT_EXCEEDED) for the whole merge.
export class GlobBudgetError extends Error {}

export class Nfa {
  private readonly mark: Uint32Array;
  private gen = 0;
  private readonly stack: number[] = [];

  constructor(
    private readonly states: readonly State[],
    private readonly start: number,
  ) {
    this.mark = new Uint32Array(states.length);
  }

  /** Adds the byte states (and MATCH) reachable from k without consuming input. */
  private close(list: number[], k: number): void {
    const { stack, mark, states, gen } = this;
    stack.push(k);
    while (stack.length > 0) {
      const s = stack.pop()!;
      if (mark[s] === gen) continue;
      mark[s] = gen;
      const st = states[s]!;
      if (st.set !== undefined || s === MATCH) list.push(s);
      else for (let j = st.next.length - 1; j >= 0; j--) stack.push(st.next[j]!);
    }
  }

  private nextGen(): void {
    this.gen = (this.gen + 1) >>> 0;
    if (this.gen === 0) {
      this.mark.fill(0);
      this.gen = 1;
    }
  }

  /** The states after reading `name` (empty: no name with that start matches). */
  private after(name: string, budget: MatchBudget | undefined): number[] {
    this.nextGen();
    let current: number[] = [];
    this.close(current, this.start);
    for (let i = 0; i < name.length; i++) {
      if (budget !== undefined) {
        budget.left -= current.length;
        if (budget.left < 0) throw new GlobBudgetError('glob matching budget exhausted');
      }
      const b = name.charCodeAt(i);
      const next: number[] = [];
      this.nextGen();
      for (const s of current) {
        const st = this.states[s]!;
        if (st.set !== undefined && st.set[b] === 1) this.close(next, st.next[0]!);
      }
      if (next.length === 0) return next;
      current = next;
    }
    return current;
  }

  run(name: string, budget: MatchBudget | undefined): boolean {
    return this.after(name, budget).includes(MATCH);
  }

  /** Every state reaches MATCH (each byte set has a member), so any state left means a match. */
  startsSomeMatch(prefix: string, budget: MatchBudget | undefined): boolean {
    return this.after(prefix, budget).length > 0;
  }

  /**
   * Walks the pattern with a four-state reader of components (0: inside a name, 1: after "/",
   * 2: after "/.", 3: after "/..") over the bytes it forces; any other byte resets it to 0.
   */
  spellsOddComponent(): boolean {
    const seen = new Uint8Array(this.states.length * 4);
    const todo: number[] = [this.start * 4];
    while (todo.length > 0) {
      const item = todo.pop()!;
      if (seen[item] === 1) continue;
      seen[item] = 1;
      const s = item >> 2;
      const at = item & 3;
      if (s === MATCH) {
        if (at >= 2) return true; // ends in "/." or "/.."
        continue;
      }
      const st = this.states[s]!;
      if (st.set === undefined) {
        // Past a star the reader starts afresh: what the star matched, even nothing, is not
        // the pattern's to spell ("/home/*/.*" spells no "." component).
        const next = st.star ? 0 : at;
        for (const n of st.next) todo.push(n * 4 + next);
        continue;
      }
      const forced = st.only;
      let next = 0;
      if (forced === SLASH) {
        if (at !== 0) return true; // "//", "/./" or "/../"
        next = 1;
      } else if (forced === DOT && at !== 0) {
        next = at === 3 ? 0 : at + 1;
      }
      todo.push(st.next[0]! * 4 + next);
    }
    return false;
  }
}

const SLASH = 0x2f;
const DOT = 0x2e;

/** The one byte a set holds, or -1 when it holds several. */
export function onlyMember(set: ByteSet): number {
  let member = -1;
  for (let b = 0; b < 256; b++) {
    if (set[b] !== 1) continue;
    if (member >= 0) return -1;
    member = b;
  }
  return member;
}

/** The NFA of a parsed pattern. */
export function buildNfa(nodes: readonly Node[]): Nfa {
  const states: State[] = [{ next: [] }]; // state 0 = match (a split with no successors)
  return new Nfa(states, build(nodes, states, MATCH));
}
