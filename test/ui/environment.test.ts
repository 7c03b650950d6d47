import { describe, expect, it } from 'vitest';
import { isCI, isInteractive, useColor } from '../../src/ui/environment.js';

describe('terminal predicates', () => {
  it('spins only on a terminal with a width, outside CI', () => {
    expect(isInteractive({ isTTY: true, columns: 80 }, {})).toBe(true);
    expect(isInteractive({ isTTY: true, columns: 0 }, {})).toBe(false);
    expect(isInteractive({ isTTY: true }, {})).toBe(false);
    expect(isInteractive({ isTTY: false, columns: 80 }, {})).toBe(false);
    expect(isInteractive({ isTTY: true, columns: 80 }, { CI: 'true' })).toBe(false);
    expect(isInteractive({ isTTY: true, columns: 80 }, { TERM: 'dumb' })).toBe(false);
  });

  it('reads CI and NO_COLOR the usual way', () => {
    expect(isCI({ CI: '1' })).toBe(true);
    expect(isCI({ CI: 'false' })).toBe(false);
    expect(isCI({})).toBe(false);
    expect(useColor({ isTTY: true }, false, {})).toBe(true);
    expect(useColor({ isTTY: true }, false, { NO_COLOR: '1' })).toBe(false);
    expect(useColor({ isTTY: true }, true, {})).toBe(false);
    expect(useColor({ isTTY: false }, false, { FORCE_COLOR: '1' })).toBe(true);
  });
});
