// A progress line on stderr, shown only on a terminal and only when the work takes longer than a
// moment (so scripted and fast runs stay quiet).

const DELAY_MS = 300;

export function progress(label: string): { step(text: string): void; done(): void } {
  const tty = process.stderr.isTTY === true;
  let current = label;
  let shown = false;
  const timer = tty
    ? setTimeout(() => {
        shown = true;
        process.stderr.write(`\r\x1b[2K${current}…`);
      }, DELAY_MS)
    : undefined;
  timer?.unref();
  return {
    step(text: string) {
      current = `${label}: ${text}`;
      if (shown) process.stderr.write(`\r\x1b[2K${current}…`);
    },
    done() {
      if (timer) clearTimeout(timer);
      if (shown) process.stderr.write('\r\x1b[2K');
    },
  };
}
