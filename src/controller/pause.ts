// A wait a loop can be woken from early (its stop), shared by the reflector and the Lease elector.

export class Pause {
  private wakeUp: (() => void) | undefined;

  /** Resolves after `ms`, or at once when wake() is called meanwhile. */
  for(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wakeUp = undefined;
        resolve();
      }, ms);
      this.wakeUp = () => {
        clearTimeout(t);
        this.wakeUp = undefined;
        resolve();
      };
    });
  }

  /** Ends the wait under way, if any. */
  wake(): void {
    this.wakeUp?.();
  }
}
