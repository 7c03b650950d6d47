/**
 * Decides when runs on the main thread have become too slow to keep there.
 * A model whose inputs decide its cost (a loop count, a sequence length) must
 * leave the event loop; one slow run may only be a GC pause or a busy machine.
 * So: one run over `verySlowMs`, or `strikes` runs over `slowMs` among the last
 * `window`.
 */
export class SlowRunJudge {
  private readonly recent: Uint8Array;
  private runs = 0;
  private slowCount = 0;

  constructor(
    readonly slowMs: number,
    readonly verySlowMs: number,
    readonly strikes = 3,
    readonly window = 100,
  ) {
    this.recent = new Uint8Array(window);
  }

  /** For an inline limit of `inlineMaxMs`: slow at 4x it (at least 2 ms), very slow at 25x (at least 25 ms). */
  static forInlineLimit(inlineMaxMs: number): SlowRunJudge {
    return new SlowRunJudge(Math.max(4 * inlineMaxMs, 2), Math.max(25 * inlineMaxMs, 25));
  }

  /** Records one run; returns why inference should move off the main thread, or undefined to stay. */
  record(ms: number): string | undefined {
    const slow = ms > this.slowMs ? 1 : 0;
    const slot = this.runs++ % this.window;
    this.slowCount += slow - this.recent[slot];
    this.recent[slot] = slow;
    if (ms > this.verySlowMs) return `a run took ${ms.toFixed(1)} ms on the main thread (over ${this.verySlowMs} ms)`;
    if (this.slowCount >= this.strikes)
      return `${this.slowCount} of the last ${Math.min(this.runs, this.window)} runs on the main thread took over ${this.slowMs} ms`;
    return undefined;
  }
}
