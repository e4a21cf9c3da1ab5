// Whether an async operation left the event loop: the store's metadata steps are synchronous
// (src/store/fsutil.ts), so a cached pull or an in-use update settles in microtasks alone, while
// a file-system call through libuv's thread pool lets a queued setImmediate run first.

/** Runs `fn` and says whether a setImmediate queued just before it ran before `fn` settled. */
export async function settlesWithinTurn<T>(fn: () => Promise<T>): Promise<{ value: T; turned: boolean }> {
  let turned = false;
  const immediate = setImmediate(() => {
    turned = true;
  });
  try {
    const value = await fn();
    return { value, turned };
  } finally {
    clearImmediate(immediate);
  }
}
