#!/usr/bin/env node
// Writes templates/schemas/kserve-inferenceservice.schema.json.gz, the schema `mlops deploy --target
// <kserve>` checks InferenceServices against: the openAPIV3Schema of KServe's own CRD, with its
// descriptions dropped (636 KB instead of 1.9 MB, 23 KB gzipped).
//   node scripts/kserve-schema.js path/to/kserve/config/crd/full/serving.kserve.io_inferenceservices.yaml <kserve commit>
import { readFileSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { parse } from 'yaml';

const [file, commit] = process.argv.slice(2);
if (!file || !commit) {
  console.error('usage: node scripts/kserve-schema.js <serving.kserve.io_inferenceservices.yaml> <kserve commit>');
  process.exit(2);
}
const crd = parse(readFileSync(file, 'utf8'));
const version = crd.spec.versions.find((v) => v.name === 'v1beta1');
const strip = (node) => {
  if (Array.isArray(node)) return node.map(strip);
  if (node && typeof node === 'object')
    return Object.fromEntries(
      Object.entries(node)
        .filter(([k]) => k !== 'description')
        .map(([k, v]) => [k, strip(v)]),
    );
  return node;
};
const schema = { $comment: `kserve/kserve ${commit}: ${crd.metadata.name} ${version.name}`, ...strip(version.schema.openAPIV3Schema) };
writeFileSync(new URL('../templates/schemas/kserve-inferenceservice.schema.json.gz', import.meta.url), gzipSync(JSON.stringify(schema), { level: 9 }));
