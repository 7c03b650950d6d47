/**
 * What is written from the schema (config/schema.ts), so that none of it can say something the schema does
 * not: mlops.config.example.json, the reference in docs/configuration.md and config/default-values.ts.
 * `npm run config-files` writes them (scripts/config-files.js); test/config/load.test.ts fails when one is stale.
 */
import { z } from 'zod';
import { configSchema, modelSection, modelVersionSchema, targetSchema } from './schema.js';

/** A field as the example and the reference show it. */
interface FieldDoc {
  key: string;
  description?: string;
  /** What it is when the config leaves it out; undefined when it has no default. */
  defaultValue?: unknown;
  /** A section's fields, each shown on its own; absent for a field shown as one value. */
  fields?: FieldDoc[];
}

const EXAMPLE_HEADER =
  'Every field mlops reads, with its default. Keys starting with // are comments. Copy to mlops.config.json and delete what you ' +
  "do not change. Relative paths are resolved from this file's folder.";

/**
 * The example's targets, one of each type, under the names the example gives them: what each must be
 * given, and a few values that show a feature off (a canary, alarms, secrets). The rest are the defaults.
 */
const EXAMPLE_TARGETS: Record<string, z.input<typeof targetSchema>> = {
  dev: { type: 'local' },
  staging: { type: 'kubernetes' },
  prod: { type: 'cloudrun', project: 'my-project', region: 'europe-west1' },
  kserve: { type: 'kserve' },
  sagemaker: { type: 'sagemaker', region: 'eu-west-1', executionRoleArn: 'arn:aws:iam::123456789012:role/SageMakerExecution' },
  vertex: { type: 'vertex', project: 'my-project', region: 'europe-west4' },
  lambda: {
    type: 'lambda',
    region: 'eu-west-1',
    roleArn: 'arn:aws:iam::123456789012:role/mlops-lambda',
    reservedConcurrency: 100,
    canary: [10, 100],
    alarms: ['bc-lambda-errors'],
  },
  azureml: {
    type: 'azureml',
    subscriptionId: '00000000-0000-0000-0000-000000000000',
    resourceGroup: 'ml-prod',
    location: 'westeurope',
    workspace: 'ml-workspace',
    mirror: 10,
    canary: [10, 50, 100],
  },
  containerapp: {
    type: 'containerapp',
    subscriptionId: '00000000-0000-0000-0000-000000000000',
    resourceGroup: 'apps-prod',
    location: 'westeurope',
    environment: 'apps-env',
    env: { MLOPS_WORKERS: '2' },
    secretEnv: { MLOPS_AUTH_TOKENS: 'CI_MLOPS_TOKENS' },
    canary: [20, 100],
  },
};

const REFERENCE_START = '<!-- config-reference: written by `npm run config-files` from src/config/schema.ts; edit the schema, not this section -->';
const REFERENCE_END = '<!-- config-reference end -->';

const isWrapper = (schema: z.ZodType): schema is z.ZodDefault | z.ZodPrefault | z.ZodOptional | z.ZodNonOptional =>
  schema instanceof z.ZodDefault || schema instanceof z.ZodPrefault || schema instanceof z.ZodOptional || schema instanceof z.ZodNonOptional;

/** A field's description, default and, for a section, its own fields. */
function fieldDoc(key: string, schema: z.ZodType): FieldDoc {
  // A description may sit on any of the wrappers (default, optional...) around the field's own type.
  let inner = schema;
  let description = inner.description;
  while (isWrapper(inner)) {
    inner = inner.unwrap() as z.ZodType;
    description ??= inner.description;
  }
  const parsed = schema.safeParse(undefined);
  const fields = inner instanceof z.ZodObject ? fieldsOf(inner) : [];
  return {
    key,
    description,
    defaultValue: parsed.success ? parsed.data : undefined,
    fields: fields.some((f) => f.description || f.fields) ? fields : undefined,
  };
}

/** An object's fields as both files show them; `$schema` (an editor's pointer to a JSON Schema, no setting of mlops) is left out. */
const fieldsOf = (schema: z.ZodObject): FieldDoc[] =>
  Object.entries(schema.shape)
    .filter(([key]) => !key.startsWith('$'))
    .map(([key, field]) => fieldDoc(key, field as z.ZodType));

function targetFields(type: string): FieldDoc[] {
  const option = targetSchema.options.find((o) => o.shape.type.value === type);
  if (!option) throw new Error(`no target type ${type}`);
  return fieldsOf(option);
}

/** One line per value, as the example has always been written: `{ "a": 1 }`, `[1, 8]`. */
function inline(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(inline).join(', ')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value);
    return entries.length ? `{ ${entries.map(([k, v]) => `${JSON.stringify(k)}: ${inline(v)}`).join(', ')} }` : '{}';
  }
  return JSON.stringify(value);
}

const indent = (depth: number) => '  '.repeat(depth);
const jsonObject = (members: string[], depth: number) => `{\n${members.map((m) => indent(depth + 1) + m).join(',\n')}\n${indent(depth)}}`;

/**
 * The members of an object at `depth`: a comment before each described field, then its value, `given` (written out
 * already) or its default. A field with neither, such as an optional one, shows only its comment.
 */
function exampleMembers(fields: FieldDoc[], depth: number, given: Record<string, string> = {}): string[] {
  return fields.flatMap((field) => {
    const members = field.description ? [`${JSON.stringify(`//${field.key}`)}: ${JSON.stringify(field.description)}`] : [];
    const value =
      given[field.key] ??
      (field.fields
        ? jsonObject(exampleMembers(field.fields, depth + 1), depth + 1)
        : field.defaultValue === undefined
          ? undefined
          : inline(field.defaultValue));
    return value === undefined ? members : [...members, `${JSON.stringify(field.key)}: ${value}`];
  });
}

/** mlops.config.example.json: every field with its default and description, and one commented-out target of each type. */
export function exampleConfig(): string {
  const targets = Object.entries(EXAMPLE_TARGETS).map(([name, example]) => {
    // Parsed, so that an example the schema no longer takes fails here rather than in a user's config.
    const target = targetSchema.parse(example);
    const given = Object.fromEntries(Object.entries(example).map(([key, value]) => [key, inline(value)]));
    return `${JSON.stringify(`//${name}`)}: ${jsonObject(exampleMembers(targetFields(target.type), 2, given), 2)}`;
  });
  const members = [`"//": ${JSON.stringify(EXAMPLE_HEADER)}`, ...exampleMembers(fieldsOf(configSchema), 0, { targets: jsonObject(targets, 1) })];
  return `${jsonObject(members, 0)}\n`;
}

/** Markdown outside code spans: `<name>` would be read as an HTML tag and `*` as emphasis. */
const markdown = (text: string) =>
  text
    .split(/(`[^`]*`)/)
    .map((part, i) => (i % 2 ? part : part.replace(/[<*]/g, '\\$&')))
    .join('');

/** A list item per described field, its path in full; a section's fields follow it. */
function referenceItems(fields: FieldDoc[], at: string): string[] {
  return fields.flatMap((field) => {
    const name = `${at}${field.key}`;
    if (!field.description && !field.fields) throw new Error(`${name} has no description in src/config/schema.ts`);
    const shownDefault = field.defaultValue === undefined || field.fields ? '' : ` (default \`${inline(field.defaultValue)}\`)`;
    const item = field.description ? [`- \`${name}\`${shownDefault}: ${markdown(field.description)}`] : [];
    return field.fields ? [...item, ...referenceItems(field.fields, `${name}.`)] : item;
  });
}

/** A heading per top-level field; `targets` lists each target type's fields under its own. */
function referenceSection(field: FieldDoc): string[] {
  const lines = [`### \`${field.key}\``, ''];
  if (field.description) lines.push(markdown(field.description), '');
  if (field.fields) return [...lines, ...referenceItems(field.fields, `${field.key}.`), ''];
  if (field.key !== 'targets') return [...lines, `Default: \`${inline(field.defaultValue)}\`.`, ''];
  const types = targetSchema.options.map((o) => o.shape.type.value);
  return [
    ...lines,
    ...types.flatMap((type) => [
      `#### \`"type": "${type}"\``,
      '',
      ...referenceItems(
        targetFields(type).filter((f) => f.key !== 'type'),
        '',
      ),
      '',
    ]),
  ];
}

/** The reference section of docs/configuration.md: each section's fields, with their defaults and descriptions. */
export function configReference(): string {
  const sections = fieldsOf(configSchema).flatMap(referenceSection);
  return [REFERENCE_START, '', 'Every field, by section, with its default.', '', ...sections, REFERENCE_END].join('\n');
}

/** The page with its reference section replaced by `reference` (appended under a heading the first time). */
export function withReference(page: string, reference = configReference()): string {
  const start = page.indexOf(REFERENCE_START);
  const end = page.indexOf(REFERENCE_END);
  if (start < 0 || end < start) return `${page.trimEnd()}\n\n## Reference\n\n${reference}\n`;
  return page.slice(0, start) + reference + page.slice(end + REFERENCE_END.length);
}

/** What an object's fields are when left out; fields with no default (required, or optional without one) are left out. */
function defaultsOf(schema: z.ZodObject): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(schema.shape as Record<string, z.ZodType>).flatMap(([key, field]) => {
      const parsed = field.safeParse(undefined);
      return parsed.success && parsed.data !== undefined ? [[key, parsed.data]] : [];
    }),
  );
}

/** Every default the schema gives, as config/defaults.ts exports them. */
export function schemaDefaults() {
  const { $schema: _none, model: _notGiven, models: _noEntries, ...sections } = configSchema.parse({});
  const defaults = { model: modelSection.parse({}), models: [], ...sections };
  return {
    DEFAULTS: defaults,
    TARGET_DEFAULTS: Object.fromEntries(
      targetSchema.options.map((option) => [option.shape.type.value, { type: option.shape.type.value, ...defaultsOf(option) }]),
    ),
    // Only a model of several that lists no versions takes this version, so normalize applies it, not the schema.
    MODEL_ENTRY_DEFAULTS: { version: defaults.model.version, ...defaultsOf(modelVersionSchema) },
  };
}

/** config/default-values.ts: the defaults as plain data, for the server, whose bundle leaves zod (the CLI's) out. */
export function defaultValuesSource(): string {
  const { DEFAULTS, TARGET_DEFAULTS, MODEL_ENTRY_DEFAULTS } = schemaDefaults();
  return [
    '/**',
    ' * Every default, written from the schema (config/schema.ts) by `npm run config-files`: edit the schema, not this file.',
    ' * Plain data, so that the server, which reads them, is bundled without zod.',
    ' */',
    "import type { Config, ModelEntryDefaults, TargetDefaults } from './types.js';",
    '',
    '/** What each field is when a config does not give it. */',
    `export const DEFAULTS: Config = ${JSON.stringify(DEFAULTS, null, 2)};`,
    '',
    "/** Each target type's defaults; a target in config is merged over its type's. */",
    `export const TARGET_DEFAULTS: TargetDefaults = ${JSON.stringify(TARGET_DEFAULTS, null, 2)};`,
    '',
    '/** What a model of `models`, and each of its versions, takes when it does not say. */',
    `export const MODEL_ENTRY_DEFAULTS: ModelEntryDefaults = ${JSON.stringify(MODEL_ENTRY_DEFAULTS, null, 2)};`,
    '',
  ].join('\n');
}
