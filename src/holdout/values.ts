import { INTEGER_RANGE, type Datatype } from '../model/datatypes.js';

/**
 * One cell or JSON element as the input's datatype wants it, or undefined.
 * On the hot path of every holdout row, so it allocates nothing; the reason
 * for a refusal comes from valueProblem, called only then.
 */
export function parseValue(raw: unknown, datatype: Datatype): number | string | undefined {
  if (typeof raw === 'string' && raw.length > 0 && raw.charCodeAt(0) > 32 && datatype !== 'BYTES' && datatype !== 'BOOL') {
    const fast = Number(raw);
    if (
      Number.isFinite(fast) &&
      (!INTEGER_RANGE[datatype] || (Number.isInteger(fast) && fast >= INTEGER_RANGE[datatype][0] && fast <= INTEGER_RANGE[datatype][1]))
    )
      return fast;
  }
  const checked = checkValue(raw, datatype);
  return 'value' in checked ? checked.value : undefined;
}

/** Why parseValue refused a value, for the error message. */
export function valueProblem(raw: unknown, datatype: Datatype): string {
  const checked = checkValue(raw, datatype);
  return 'problem' in checked ? checked.problem : 'unreadable value';
}

function checkValue(raw: unknown, datatype: Datatype): { value: number | string } | { problem: string } {
  if (datatype === 'BYTES') return typeof raw === 'string' ? { value: raw } : { problem: `expected a string, got ${JSON.stringify(raw)}` };
  if (datatype === 'BOOL') {
    if (raw === true || raw === 1 || raw === '1' || raw === 'true' || raw === 'True') return { value: 1 };
    if (raw === false || raw === 0 || raw === '0' || raw === 'false' || raw === 'False') return { value: 0 };
    return { problem: `expected true/false or 1/0, got ${JSON.stringify(raw)}` };
  }
  let value: number;
  if (typeof raw === 'number') value = raw;
  else if (typeof raw === 'string') {
    const text = raw.trim();
    if (text === '') return { problem: 'the cell is empty' };
    if (/^[-+]?nan$/i.test(text)) return { problem: 'NaN is not a value the model can score' };
    value = Number(text);
    if (Number.isNaN(value)) return { problem: `${JSON.stringify(raw)} is not a number` };
  } else if (raw === null || raw === undefined) {
    return { problem: 'the value is missing (null)' };
  } else return { problem: `expected a number, got ${JSON.stringify(raw)}` };
  if (Number.isNaN(value)) return { problem: 'NaN is not a value the model can score' };
  if (!Number.isFinite(value)) return { problem: `${raw} is not finite` };
  const range = INTEGER_RANGE[datatype];
  if (range) {
    if (!Number.isInteger(value)) return { problem: `${raw} is not an integer (the input is ${datatype})` };
    if (value < range[0] || value > range[1]) return { problem: `${raw} is out of range for ${datatype}` };
  }
  return { value };
}
