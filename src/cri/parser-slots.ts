// The apparmor_parser runs the shim allows at once, and who gets a freed one (docs/apparmor.md).
// Checks wait by source (the namespace of the pod that asked), served in turn: a freed slot goes
// to the first waiter of the source whose turn it is, and that source goes to the back, so one
// namespace's burst of slow texts holds back another namespace's check by one slot's turn, not
// by the whole burst. Loads, from whichever namespace, wait in one turn of their own, in arrival
// order: a load runs under its profile's name lock, which every namespace's creates of that
// profile wait on, so in its namespace's turn it would hold them all behind that namespace's
// burst; and ahead of every check, a namespace's loads retried again and again (each failing)
// would hold back every namespace's checks.

/** The turn of the loads, which no namespace's name can be. */
const LOADS = Symbol('loads');

export class ParserSlots {
  private running = 0;
  /** Runs waiting, by source (LOADS for the loads); the map's order is the turn order. */
  private readonly waitingBySource = new Map<string | typeof LOADS, (() => void)[]>();

  constructor(private readonly max: number) {}

  /**
   * Runs `work` (a parser run) once a slot is free. `dropped`: nobody waits for it any more (it
   * is given up before it starts, rejecting with the signal's reason). `source`: whose turn a
   * check waits in; undefined for a load.
   */
  async run<T>(dropped: AbortSignal, source: string | undefined, work: () => Promise<T>): Promise<T> {
    while (this.running >= this.max) await this.wait(dropped, source);
    this.running++;
    try {
      // Nobody waits for it any more (the last create went while it waited): the slot goes on.
      dropped.throwIfAborted();
      return await work();
    } finally {
      this.running--;
      this.next()?.();
    }
  }

  private next(): (() => void) | undefined {
    const turn = this.waitingBySource.entries().next();
    if (turn.done === true) return undefined;
    const [source, waiting] = turn.value;
    this.waitingBySource.delete(source);
    const take = waiting.shift();
    if (waiting.length > 0) this.waitingBySource.set(source, waiting);
    return take;
  }

  /** Waits for a slot in `source`'s turn, or the loads'; rejects, giving up its place, when `dropped` fires first. */
  private wait(dropped: AbortSignal, source: string | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (dropped.aborted) return reject(dropped.reason);
      const key = source ?? LOADS;
      const waiting = this.waitingBySource.get(key) ?? [];
      const take = () => {
        dropped.removeEventListener('abort', leave);
        resolve();
      };
      const leave = () => {
        const i = waiting.indexOf(take);
        if (i >= 0) waiting.splice(i, 1);
        if (waiting.length === 0 && this.waitingBySource.get(key) === waiting) this.waitingBySource.delete(key);
        reject(dropped.reason);
      };
      dropped.addEventListener('abort', leave, { once: true });
      if (!this.waitingBySource.has(key)) this.waitingBySource.set(key, waiting);
      waiting.push(take);
    });
  }
}
