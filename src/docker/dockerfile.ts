/** A Dockerfile double-quoted string: no variable expansion, no line breaks. */
export function dockerfileString(value: string): string {
  return `"${value
    .replace(/\\/g, '\\\\')
    .replace(/"/g, '\\"')
    .replace(/\$/g, '\\$')
    .replace(/[\r\n]+/g, ' ')}"`;
}
