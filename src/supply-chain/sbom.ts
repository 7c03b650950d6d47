import type Docker from 'dockerode';
import { Contrib, Enums, Models, Serialize, Spec, Validation } from '@cyclonedx/cyclonedx-library';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PackageURL } from 'packageurl-js';
import spdxExpressionParse from 'spdx-expression-parse';
import { MlopsError, ExitCode, inputError } from '../errors.js';
import { packageDir } from '../packages.js';
import { QUALITY_METRICS } from '../metrics/names.js';
import { writeFileAtomic } from '../report/files.js';
import { VERSION } from '../version.js';
import { IMAGING_LABEL, MODEL_FILES_LABEL, MODEL_INPUTS_LABEL, MODEL_NAME_LABEL, MODEL_OUTPUTS_LABEL, MODEL_SHA256_LABEL } from '../model/labels.js';

export const SBOM_MEDIA_TYPE = 'application/vnd.cyclonedx+json';
export const SBOM_FILE = path.join('.mlops', 'sbom.cdx.json');

const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** What the SBOM describes: an image mlops built, as its labels say, and where it lives. */
export interface SbomSubject {
  /** The image's local name without tag, e.g. registry:5000/team/model. */
  name: string;
  /** Release version, or the build tag (sha-...) before `mlops tag`. */
  version: string;
  /** The engine's image id (config digest). */
  imageId: string;
  /** The registry's manifest digest, once pushed. */
  digest?: string;
  labels: Record<string, string>;
  /** amd64 or arm64 (the image's architecture). */
  architecture: string;
}

interface BundledPackage {
  name: string;
  version: string;
  license: string | null;
  homepage: string | null;
  repository: string | null;
}

const npmPurl = (name: string, version: string) => {
  const slash = name.startsWith('@') ? name.indexOf('/') : -1;
  return new PackageURL(
    'npm',
    slash === -1 ? undefined : name.slice(0, slash),
    slash === -1 ? name : name.slice(slash + 1),
    version,
    undefined,
    undefined,
  ).toString();
};

async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** A deterministic serial number: the same image and digest give the same SBOM, byte for byte. */
function serialNumber(subject: SbomSubject): string {
  const hex = createHash('sha256')
    .update(`${subject.imageId}\n${subject.digest ?? ''}\n${subject.version}`)
    .digest('hex');
  // An RFC 4122 version-5-shaped UUID from the hash (what the schema asks of urn:uuid).
  return `urn:uuid:${hex.slice(0, 8)}-${hex.slice(8, 12)}-5${hex.slice(13, 16)}-${((parseInt(hex[16], 16) & 0x3) | 0x8).toString(16)}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

function ociPurl(name: string, digest: string, tag?: string): string {
  const lastSlash = name.lastIndexOf('/');
  const qualifiers: Record<string, string> = { repository_url: name, ...(tag ? { tag } : {}) };
  return new PackageURL('oci', undefined, name.slice(lastSlash + 1), digest, qualifiers, undefined).toString();
}

function signatureFormat(json: string | undefined): { format: string }[] {
  try {
    const specs = JSON.parse(json ?? '[]') as { name: string; datatype: string; shape: number[] | null }[];
    return specs.map((s) => ({ format: `${s.name}: ${s.datatype}${s.shape ? `[${s.shape.join(',')}]` : ''}` }));
  } catch {
    return [];
  }
}

/**
 * The model card of the model component: its signature and, once `mlops tag` has stamped them, its
 * test metrics. The CycloneDX library has no model of modelCard, so it is added to the library's
 * normalized document (and the whole is then checked by the library's strict validator).
 */
function modelCard(labels: Record<string, string>): Record<string, unknown> {
  const rows = labels['mlops.test.rows'];
  const metrics = QUALITY_METRICS.filter((name) => labels[`mlops.test.${name}`] !== undefined).map((name) => ({
    type: name,
    value: labels[`mlops.test.${name}`],
    slice: `holdout${rows ? ` (${rows} rows)` : ''}`,
  }));
  return {
    modelParameters: { inputs: signatureFormat(labels[MODEL_INPUTS_LABEL]), outputs: signatureFormat(labels[MODEL_OUTPUTS_LABEL]) },
    ...(metrics.length > 0 ? { quantitativeAnalysis: { performanceMetrics: metrics } } : {}),
    ...(labels['mlops.test.passed'] ? { properties: [{ name: 'mlops:test.passed', value: labels['mlops.test.passed'] }] } : {}),
  };
}

/** Only an image this mlops built can have its SBOM made here: checked before anything is pushed. */
export function requireSbomLabels(image: string, labels: Record<string, string>): void {
  if (!labels[MODEL_SHA256_LABEL]) throw inputError(`${image} was not built by mlops (no ${MODEL_SHA256_LABEL} label)`, 'run `mlops build` first');
  if (labels['mlops.version'] && labels['mlops.version'] !== VERSION) {
    throw inputError(
      `${image} was built by mlops ${labels['mlops.version']}, this is ${VERSION}: its SBOM cannot list the server's packages`,
      'rebuild the image with this mlops (`mlops build`), then tag and push it',
    );
  }
}

type Component = InstanceType<typeof Models.Component>;
type Licenses = InstanceType<typeof Contrib.License.Factories.LicenseFactory>;
/** An npm package as a library component, with its bom-ref and purl. */
type LibraryOf = (
  pkg: { name: string; version: string; license?: string | null; homepage?: string | null; repository?: string | null },
  ref: string,
) => Component;

/** sharp (npm) and the libvips build it ships, as the image carries them. */
async function imagingComponents(library: LibraryOf, licenses: Licenses): Promise<Component[]> {
  const sharpDir = packageDir('sharp');
  const sharp = JSON.parse(await readFile(path.join(sharpDir, 'package.json'), 'utf8')) as BundledPackage & { config?: { libvips?: string } };
  const component = library(sharp, `npm:sharp@${sharp.version}`);
  const libvips = new Models.Component(Enums.ComponentType.Library, 'libvips', {
    bomRef: 'native:libvips',
    version: sharp.config?.libvips ?? 'unknown',
    description:
      "libvips and the image codecs it links (libjpeg-turbo, libpng, libwebp, libtiff, libheif), as sharp's prebuilt @img/sharp-libvips package ships them",
    licenses: new Models.LicenseRepository([licenses.makeFromString('LGPL-3.0-or-later')]),
  });
  component.dependencies.add(libvips.bomRef);
  return [component, libvips];
}

/** The npm packages the server bundle holds, as `npm run build` listed them. */
async function bundledPackages(): Promise<BundledPackage[]> {
  return JSON.parse(
    await readFile(path.join(PACKAGE_ROOT, 'dist', 'server-packages.json'), 'utf8').catch(() => {
      throw new MlopsError('dist/server-packages.json is missing: the server bundle was built without its package list', {
        exitCode: ExitCode.internal,
        hint: 'run `npm run build` in the mlops package',
      });
    }),
  ) as BundledPackage[];
}

/** Makes npm packages into library components through the CycloneDX library's package.json builder. */
function libraryComponents(licenses: Licenses): LibraryOf {
  const builder = new Contrib.FromNodePackageJson.Builders.ComponentBuilder(new Contrib.FromNodePackageJson.Factories.ExternalReferenceFactory(), licenses);
  return (pkg, ref) => {
    const component = builder.makeComponent(
      {
        name: pkg.name,
        version: pkg.version,
        ...(pkg.license ? { license: pkg.license } : {}),
        ...(pkg.homepage ? { homepage: pkg.homepage } : {}),
        ...(pkg.repository ? { repository: pkg.repository } : {}),
      },
      Enums.ComponentType.Library,
    )!;
    component.bomRef.value = ref;
    component.purl = npmPurl(pkg.name, pkg.version);
    return component;
  };
}

/** The image itself: the SBOM's metadata component. */
function imageComponent(subject: SbomSubject): Component {
  const image = new Models.Component(Enums.ComponentType.Container, subject.name, {
    bomRef: 'image',
    version: subject.version,
    ...(subject.digest ? { purl: ociPurl(subject.name, subject.digest, subject.version) } : {}),
  });
  image.properties.add(new Models.Property('mlops:image.id', subject.imageId));
  const revision = subject.labels['org.opencontainers.image.revision'];
  if (revision) image.properties.add(new Models.Property('mlops:git.commit', revision));
  return image;
}

/** The model, with its sha256 and ONNX facts, and the processing files beside it that it depends on. */
function modelComponents(labels: Record<string, string>): { model: Component; files: Component[] } {
  const model = new Models.Component(Enums.ComponentType.MachineLearningModel, labels[MODEL_NAME_LABEL] ?? 'model', {
    bomRef: 'model',
    version: labels['mlops.model.version'],
    description: 'ONNX model served by the image (/app/model/model.onnx)',
  });
  model.hashes.set(Enums.HashAlgorithm['SHA-256'], labels[MODEL_SHA256_LABEL]);
  for (const [label, property] of [
    ['mlops.model.opset', 'mlops:onnx.opset'],
    ['mlops.model.ir_version', 'mlops:onnx.irVersion'],
    ['mlops.model.producer', 'mlops:onnx.producer'],
    ['mlops.model.source_sha256', 'mlops:model.sourceSha256'],
  ] as const) {
    if (labels[label]) model.properties.add(new Models.Property(property, labels[label]));
  }
  // A model folder's processing files (preprocessor_config.json, tokenizer.json...) decide what the model is fed: each is listed with its sha256.
  const listed = labels[MODEL_FILES_LABEL] ? (JSON.parse(labels[MODEL_FILES_LABEL]) as { name: string; sha256: string }[]) : [];
  const files = listed.map((file) => {
    const data = new Models.Component(Enums.ComponentType.Data, file.name, {
      bomRef: `model-file:${file.name}`,
      description: `Beside the model in the image: how raw inputs become its tensors, or outputs labels`,
    });
    data.hashes.set(Enums.HashAlgorithm['SHA-256'], file.sha256);
    model.dependencies.add(data.bomRef);
    return data;
  });
  return { model, files };
}

/** The inference server, and the bundled packages it depends on. */
function serverComponents(bundled: BundledPackage[], library: LibraryOf): { server: Component; packages: Component[] } {
  const server = new Models.Component(Enums.ComponentType.Application, 'mlops-server', {
    bomRef: 'server',
    version: VERSION,
    description: 'The OIP v2 inference server, bundled into /app/server.mjs and /app/inference-worker.mjs',
    purl: npmPurl('mlops', VERSION),
  });
  const packages = bundled.map((pkg) => {
    const component = library(pkg, `npm:${pkg.name}@${pkg.version}`);
    server.dependencies.add(component.bomRef);
    return component;
  });
  return { server, packages };
}

/** ONNX Runtime stays outside the bundle (a native addon): its two packages and its library, copied as they are. The first is the one the image depends on. */
async function onnxRuntimeComponents(architecture: string, library: LibraryOf, licenses: Licenses): Promise<[Component, Component, Component]> {
  const ortDir = packageDir('onnxruntime-node');
  const ortNode = JSON.parse(await readFile(path.join(ortDir, 'package.json'), 'utf8')) as BundledPackage;
  const ortCommonDir = packageDir('onnxruntime-common', ortDir);
  const ortCommon = JSON.parse(await readFile(path.join(ortCommonDir, 'package.json'), 'utf8')) as BundledPackage;
  const ortNodeComponent = library(ortNode, `npm:onnxruntime-node@${ortNode.version}`);
  const ortCommonComponent = library(ortCommon, `npm:onnxruntime-common@${ortCommon.version}`);
  const arch = architecture === 'arm64' ? 'arm64' : 'x64';
  const native = new Models.Component(Enums.ComponentType.Library, 'onnxruntime', {
    bomRef: 'native:onnxruntime',
    version: ortNode.version,
    description: `ONNX Runtime's native library for linux/${arch === 'x64' ? 'amd64' : 'arm64'} (libonnxruntime.so.1) and its Node.js binding`,
    purl: new PackageURL('github', 'microsoft', 'onnxruntime', `v${ortNode.version}`, undefined, undefined).toString(),
    licenses: new Models.LicenseRepository([licenses.makeFromString('MIT')]),
  });
  const nativeLibrary = path.join(ortDir, 'bin', 'napi-v6', 'linux', arch, 'libonnxruntime.so.1');
  const nativeHash = await sha256File(nativeLibrary).catch(() => null);
  if (nativeHash) native.hashes.set(Enums.HashAlgorithm['SHA-256'], nativeHash);
  ortNodeComponent.dependencies.add(ortCommonComponent.bomRef);
  ortNodeComponent.dependencies.add(native.bomRef);
  return [ortNodeComponent, ortCommonComponent, native];
}

/** The base image the server and model were added to, when the labels name it. */
function baseImageComponent(labels: Record<string, string>): Component | null {
  const baseName = labels['org.opencontainers.image.base.name'];
  const baseDigest = labels['org.opencontainers.image.base.digest'];
  if (!baseName) return null;
  const base = new Models.Component(Enums.ComponentType.Container, baseName, {
    bomRef: 'base-image',
    description: 'The base image the server and model were added to',
    ...(baseDigest ? { version: baseDigest, purl: ociPurl(baseName.replace(/:[^/:]+$/, '').replace(/@.*$/, ''), baseDigest) } : {}),
  });
  if (labels['mlops.base.id']) base.properties.add(new Models.Property('mlops:image.id', labels['mlops.base.id']));
  return base;
}

/**
 * A CycloneDX 1.6 SBOM of an image mlops built: the image itself (metadata component), the model,
 * every npm package the server bundle holds (read off the bundle's esbuild metafile at `npm run
 * build`), ONNX Runtime's packages and native library, and the base image.
 */
export async function imageSbom(subject: SbomSubject): Promise<string> {
  const labels = subject.labels;
  requireSbomLabels(`${subject.name}:${subject.version}`, labels);
  const bundled = await bundledPackages();
  const licenses = new Contrib.License.Factories.LicenseFactory(spdxExpressionParse);
  const library = libraryComponents(licenses);

  const bom = new Models.Bom({ serialNumber: serialNumber(subject) });
  const image = imageComponent(subject);
  bom.metadata.component = image;
  // Reproducible: the build's own timestamp (git commit or SOURCE_DATE_EPOCH), not the clock.
  const created = labels['org.opencontainers.image.created'];
  if (created) bom.metadata.timestamp = new Date(created);
  bom.metadata.tools.components.add(new Models.Component(Enums.ComponentType.Application, 'mlops', { version: VERSION, bomRef: 'tool:mlops' }));

  const { model, files } = modelComponents(labels);
  const { server, packages } = serverComponents(bundled, library);
  const onnxRuntime = await onnxRuntimeComponents(subject.architecture, library, licenses);
  const base = baseImageComponent(labels);
  // sharp and libvips, in images of models that take images.
  const imaging = labels[IMAGING_LABEL] ? await imagingComponents(library, licenses) : [];
  for (const component of [model, ...files, server, ...packages, ...onnxRuntime, ...(base ? [base] : []), ...imaging]) bom.components.add(component);
  for (const dependency of [model, server, onnxRuntime[0], ...imaging.slice(0, 1), ...(base ? [base] : [])]) image.dependencies.add(dependency.bomRef);

  const normalized = new Serialize.JSON.Normalize.Factory(Spec.Spec1dot6).makeForBom().normalize(bom, { sortLists: true }) as unknown as {
    components: { 'bom-ref'?: string; modelCard?: unknown }[];
  };
  const modelEntry = normalized.components.find((c) => c['bom-ref'] === 'model');
  if (modelEntry) modelEntry.modelCard = modelCard(labels);
  const json = JSON.stringify(normalized, null, 2) + '\n';
  await validateSbom(json);
  return json;
}

/** The library's strict validator against the CycloneDX 1.6 JSON schema; a failure is mlops' own bug. */
export async function validateSbom(json: string): Promise<void> {
  const problems: unknown = await new Validation.JsonStrictValidator(Spec.Version.v1dot6).validate(json);
  if (problems !== null) {
    throw new MlopsError(`the SBOM mlops made does not validate against CycloneDX 1.6: ${JSON.stringify(problems).slice(0, 500)}`, {
      exitCode: ExitCode.internal,
    });
  }
}

/** The model's sha256 as an SBOM lists it (the machine-learning-model component's SHA-256), or null. */
export function sbomModelSha256(json: string): string | null {
  try {
    const doc = JSON.parse(json) as { components?: { type?: string; hashes?: { alg: string; content: string }[] }[] };
    const model = doc.components?.find((c) => c.type === 'machine-learning-model');
    return model?.hashes?.find((h) => h.alg === 'SHA-256')?.content ?? null;
  } catch {
    return null;
  }
}

/** The SBOM of an image on this machine, from its labels. */
export async function localImageSbom(docker: Docker, image: string, subject: { name: string; version: string; digest?: string }): Promise<string> {
  const info = await docker.getImage(image).inspect();
  return imageSbom({ ...subject, imageId: info.Id, labels: info.Config.Labels ?? {}, architecture: info.Architecture });
}

/** .mlops/sbom.cdx.json: the SBOM of the last image built, tagged or pushed here. */
export async function writeSbomFile(projectDir: string, json: string): Promise<string> {
  await writeFileAtomic(path.join(projectDir, SBOM_FILE), json);
  return SBOM_FILE;
}
