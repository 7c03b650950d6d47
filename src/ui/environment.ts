/** The two predicates that decide how the CLI behaves (see ../shared/STYLE.md, habit 6). */

export function isCI(env: NodeJS.ProcessEnv = process.env): boolean {
  const ci = env.CI;
  return ci !== undefined && ci !== '' && ci !== '0' && ci.toLowerCase() !== 'false';
}

/**
 * Spinners and redrawn lines only when a person is watching a terminal that
 * reports its width: a pseudo-terminal with 0 columns (script, some `docker
 * exec -t`) makes a spinner's line arithmetic divide by zero and redraw forever.
 */
export function isInteractive(stream: { isTTY?: boolean; columns?: number }, env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(stream.isTTY) && (stream.columns ?? 0) > 0 && !isCI(env) && env.TERM !== 'dumb';
}

export function useColor(stream: { isTTY?: boolean }, noColorFlag: boolean, env: NodeJS.ProcessEnv = process.env): boolean {
  if (noColorFlag || (env.NO_COLOR !== undefined && env.NO_COLOR !== '')) return false;
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '0') return true;
  return Boolean(stream.isTTY) && env.TERM !== 'dumb';
}
