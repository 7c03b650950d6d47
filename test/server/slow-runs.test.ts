import { describe, expect, it } from 'vitest';
import { SlowRunJudge } from '../../src/server/slow-runs.js';

describe('when main-thread runs are too slow to keep there', () => {
  it('derives its thresholds from server.inlineMaxMs', () => {
    expect(SlowRunJudge.forInlineLimit(1)).toMatchObject({ slowMs: 4, verySlowMs: 25, strikes: 3, window: 100 });
    expect(SlowRunJudge.forInlineLimit(0.1)).toMatchObject({ slowMs: 2, verySlowMs: 25 });
    expect(SlowRunJudge.forInlineLimit(2)).toMatchObject({ slowMs: 8, verySlowMs: 50 });
  });

  it('moves at one very slow run', () => {
    const judge = SlowRunJudge.forInlineLimit(1);
    expect(judge.record(0.1)).toBeUndefined();
    expect(judge.record(25)).toBeUndefined();
    expect(judge.record(25.5)).toBe('a run took 25.5 ms on the main thread (over 25 ms)');
  });

  it('tolerates slow runs now and then, and moves at the third among the last 100', () => {
    const judge = SlowRunJudge.forInlineLimit(1);
    expect(judge.record(10)).toBeUndefined();
    expect(judge.record(10)).toBeUndefined();
    expect(judge.record(10)).toBe('3 of the last 3 runs on the main thread took over 4 ms');
  });

  it('forgets slow runs that have left the window', () => {
    const judge = SlowRunJudge.forInlineLimit(1);
    expect(judge.record(10)).toBeUndefined();
    expect(judge.record(10)).toBeUndefined();
    for (let i = 0; i < 98; i++) expect(judge.record(0.2)).toBeUndefined();
    // The 101st run pushes the first slow one out: two in the window, not three.
    expect(judge.record(10)).toBeUndefined();
    // The 102nd pushes out the second; the 103rd is the third in the window.
    expect(judge.record(10)).toBeUndefined();
    expect(judge.record(10)).toBe('3 of the last 100 runs on the main thread took over 4 ms');
  });
});
