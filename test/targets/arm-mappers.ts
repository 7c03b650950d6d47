/**
 * The Azure SDKs' own mappers (generated from the REST specs of the API version each speaks): which
 * fields a body must name. The tests check every body the adapters sent against them.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

type Mapper = {
  serializedName?: string;
  required?: boolean;
  readOnly?: boolean;
  constraints?: unknown;
  type: {
    name: string;
    className?: string;
    modelProperties?: Record<string, Mapper>;
    value?: Mapper;
    element?: Mapper;
    uberParent?: string;
    polymorphicDiscriminator?: { serializedName: string };
  };
};

const require = createRequire(import.meta.url);
const FILES = {
  machinelearning: path.join(path.dirname(require.resolve('@azure/arm-machinelearning/package.json')), 'dist-esm/src/models/mappers.js'),
  appcontainers: path.join(path.dirname(require.resolve('@azure/arm-appcontainers/package.json')), 'dist/esm/models/mappers.js'),
};

async function mappers(sdk: keyof typeof FILES): Promise<Record<string, Mapper> & { discriminators: Record<string, Mapper> }> {
  return import(pathToFileURL(FILES[sdk]).href);
}

/** The required fields (dotted wire paths) that `body` lacks, walking the model, its flattened properties, maps, lists and polymorphic kinds. */
export async function missingRequired(sdk: keyof typeof FILES, model: string, body: unknown): Promise<string[]> {
  const all = await mappers(sdk);
  const missing: string[] = [];
  const composite = (mapper: Mapper, value: Record<string, unknown>): Mapper => {
    const discriminator = mapper.type.polymorphicDiscriminator?.serializedName;
    const kind = discriminator ? value[discriminator] : undefined;
    const key = `${String(mapper.type.uberParent ?? mapper.type.className)}.${String(kind)}`;
    return (kind !== undefined && all.discriminators[key]) || (mapper.type.className ? (all[mapper.type.className] ?? mapper) : mapper);
  };
  const walk = (mapper: Mapper, value: unknown, at: string) => {
    if (value === undefined || value === null) return;
    if (mapper.type.name === 'Composite' && typeof value === 'object') {
      const resolved = composite(mapper, value as Record<string, unknown>);
      for (const property of Object.values(resolved.type.modelProperties ?? {})) {
        if (!property.serializedName || property.readOnly) continue;
        const wire = property.serializedName
          .replace(/\\\./g, '\u0000')
          .split('.')
          .map((s) => s.replaceAll(String.fromCharCode(0), '.'));
        let v: unknown = value;
        for (const part of wire) v = v && typeof v === 'object' ? (v as Record<string, unknown>)[part] : undefined;
        const where = at ? `${at}.${wire.join('.')}` : wire.join('.');
        if (v === undefined || v === null) {
          if (property.required) missing.push(where);
          continue;
        }
        walk(property, v, where);
      }
    } else if (mapper.type.name === 'Dictionary' && mapper.type.value && typeof value === 'object') {
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) walk(mapper.type.value, v, `${at}.${k}`);
    } else if (mapper.type.name === 'Sequence' && mapper.type.element && Array.isArray(value)) {
      value.forEach((v, i) => walk(mapper.type.element!, v, `${at}[${i}]`));
    }
  };
  const root = all[model];
  if (!root) throw new Error(`no mapper ${model} in ${sdk}`);
  walk(root, body, '');
  return missing;
}
