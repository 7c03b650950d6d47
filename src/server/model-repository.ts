/**
 * The models a server holds: one or several, each with one or several versions side by side.
 * Requests name a model (and maybe a version); an unversioned request is split between the serving
 * versions by weight, and copied to the shadow versions, whose answers are compared and discarded.
 * Each version has its own engine (workers, batch queue), live profile and metrics labels; the
 * repository extension's load and unload start and release them without a restart.
 */
import type { Tensor, Tensors } from '../model/session.js';
import { LABEL_OUTPUT, SCORE_OUTPUT, serveProcessing, type ServedProcessing } from './processing.js';
import { describePlan, type ProcessingOverrides } from '../processing/plan.js';
import { recordModelOf, copyTensors, type RecordedRequest } from '../monitor/inference-records.js';
import { inputError } from '../errors.js';
import { defaultModelName } from '../model/inspect.js';
import { BadRequest } from '../protocol/request.js';
import { decodeRestResponse } from '../protocol/rest.js';
import { startEngine, type InferenceEngine } from './engine.js';
import type { MemoryLedger } from './memory-budget.js';
import { versionMetrics, type HeldVersion, type ServerMetrics } from './metrics.js';
import { readReferenceProfile, serverProfiling, type ServerProfiling } from './profiling.js';

/** One version of one model, as the server is told to serve it. */
export interface ModelSpec {
  name: string;
  version: string;
  path: string;
  expectedSha256?: string;
  /** A reference profile (from `mlops build`); empty: not profiled. */
  profilePath: string;
  workers: number;
  batching: { enabled: boolean; maxBatchSize: number; maxWaitMs: number };
  /** Its share of the model's unversioned requests (among the serving versions). */
  weight: number;
  /** Gets a copy of each unversioned request; its answer is compared with the serving one and dropped. */
  shadow: boolean;
  /** The config's model.preprocess and model.postprocess; undefined: the file the build put beside the model, if any. */
  processing?: ProcessingOverrides;
}

/** What every version's engine shares: the server's settings. */
export interface EngineSettings {
  intraOpThreads: number;
  allowNonFinite: boolean;
  inlineMaxMs: number;
  explain: { samples: number; patch: number };
  memory?: MemoryLedger;
  /** How long versions swapped out by a load or unload may take to answer what they hold before they are released anyway. */
  drainMs: number;
}

/** The OIP repository extension's model states. */
export type ModelState = 'READY' | 'LOADING' | 'UNLOADING' | 'UNAVAILABLE';

export interface ServedVersion {
  spec: ModelSpec;
  engine: InferenceEngine;
  profiling: ServerProfiling;
  recordModel: RecordedRequest['model'];
  /** GET /v2/models/{name}/versions/{v} and gRPC ModelMetadata. */
  metadata: Record<string, unknown>;
  /** Raw inputs (images, texts) and labels, for a model folder that says how; undefined: tensors only. */
  processing?: ServedProcessing;
  /** A shadow's runs that failed in a row: from SHADOW_FAILING on, it is reported not ready (and said once in the log). */
  failedInRow?: number;
}

/** A shadow that fails this many runs in a row is reported not ready; one success clears it. */
export const SHADOW_FAILING = 10;

interface HeldModel {
  name: string;
  specs: ModelSpec[];
  state: ModelState;
  /** Why it is UNAVAILABLE: unloaded, or its last load failed. */
  reason: string;
  versions: ServedVersion[];
  serving: ServedVersion[];
  shadows: ServedVersion[];
  /** Running sums of the serving versions' weights, for the split. */
  cumulative: number[];
  /** A load or unload is under way: another waits its turn (409), or two loads would each swap in sessions and leak one set. */
  changing: boolean;
}

/** Shadow runs in flight at once, over the whole server; past it a copy is skipped (and counted) rather than queued without bound. */
const MAX_SHADOW_RUNS = 64;

export class ModelRepository {
  private readonly models = new Map<string, HeldModel>();
  /** More than one version in all: log lines name the one they are about. */
  private several = false;
  private shadowRuns = 0;

  private constructor(
    private readonly settings: EngineSettings,
    private readonly metrics: ServerMetrics,
    private readonly log: (line: string) => void,
  ) {}

  /** Loads every version of every model, in order; when one fails, those loaded are released and the error thrown. */
  static async start(specs: ModelSpec[], settings: EngineSettings, metrics: ServerMetrics, log: (line: string) => void): Promise<ModelRepository> {
    const repository = new ModelRepository(settings, metrics, log);
    repository.several = specs.length > 1;
    for (const given of specs) {
      // No name: the one the model's file gives it, as a single model's server has always named it.
      const spec = given.name ? given : { ...given, name: defaultModelName(given.path) };
      let held = repository.models.get(spec.name);
      if (!held)
        repository.models.set(
          spec.name,
          (held = { name: spec.name, specs: [], state: 'UNAVAILABLE', reason: '', versions: [], serving: [], shadows: [], cumulative: [], changing: false }),
        );
      held.specs.push(spec);
    }
    for (const problem of [...repository.models.values()].map(specProblem))
      if (problem) throw inputError(problem, 'check the model list (config models, or the model repository file)');
    try {
      for (const held of repository.models.values()) await repository.loadModel(held);
    } catch (error) {
      await repository.release();
      throw error;
    }
    return repository;
  }

  /** A name the server holds: only these become metric labels (a client's made-up names would grow the series without bound). */
  has(name: string): boolean {
    return this.models.has(name);
  }

  get names(): string[] {
    return [...this.models.keys()];
  }

  /** The model a request names; a request that names none (gRPC's empty name, /invocations) means the first. */
  private held(name: string | undefined): HeldModel {
    if (!name) return this.models.values().next().value!;
    const held = this.models.get(name);
    if (!held) throw new BadRequest(`unknown model '${name}'; this server serves ${this.names.map((n) => `'${n}'`).join(', ')}`, 404);
    return held;
  }

  private available(held: HeldModel): void {
    if (held.state !== 'READY') throw new BadRequest(`model '${held.name}' is ${held.state.toLowerCase()}${held.reason ? ` (${held.reason})` : ''}`, 503);
  }

  /**
   * The version that answers a request: the one named, or one of the serving versions picked by
   * weight. Throws 404 for an unknown model or version, 503 while the model is not loaded.
   */
  route(name: string | undefined, version?: string): ServedVersion {
    const held = this.held(name);
    this.available(held);
    if (version !== undefined) return this.version(held, version);
    if (held.serving.length === 1) return held.serving[0];
    const draw = Math.random() * held.cumulative[held.cumulative.length - 1];
    const at = held.cumulative.findIndex((c) => draw < c);
    return held.serving[at === -1 ? held.serving.length - 1 : at];
  }

  /**
   * Refuses (404, 503) a request route() would refuse, without picking a version: checked before a body
   * is read, while the version is picked once it has arrived (a load may have swapped it meanwhile).
   */
  check(name: string | undefined, version?: string): void {
    const held = this.held(name);
    this.available(held);
    if (version !== undefined) this.version(held, version);
  }

  /** The version named, or the serving version of the largest weight: what one-off reads (metadata, profile) describe. */
  primary(name: string | undefined, version?: string): ServedVersion {
    const held = this.held(name);
    this.available(held);
    if (version !== undefined) return this.version(held, version);
    return held.serving.reduce((best, v) => (v.spec.weight > best.spec.weight ? v : best));
  }

  private version(held: HeldModel, version: string): ServedVersion {
    const found = held.versions.find((v) => v.spec.version === version);
    if (!found) throw new BadRequest(`model '${held.name}' has no version '${version}'; it has ${held.specs.map((s) => `'${s.version}'`).join(', ')}`, 404);
    return found;
  }

  /** Whether a model answers: any version when none is named. */
  ready(name: string | undefined, version?: string): { name: string; ready: boolean } {
    const held = this.held(name);
    if (version !== undefined && !held.specs.some((s) => s.version === version)) this.version(held, version);
    // Ready only while a serving version can take work: not while runs past their deadline hold every worker.
    return { name: held.name, ready: held.state === 'READY' && held.serving.some((v) => v.engine.accepting) };
  }

  /** Every model can take work (the server's readiness, beside its own state). */
  get accepting(): boolean {
    for (const held of this.models.values()) if (held.state === 'READY' && !held.serving.some((v) => v.engine.accepting)) return false;
    return true;
  }

  /** The shadows that get a copy of a request the split sent to `served`. */
  shadowsOf(served: ServedVersion): ServedVersion[] {
    return served.spec.shadow ? [] : (this.models.get(served.spec.name)?.shadows ?? []);
  }

  /**
   * Runs a copy of a request on each shadow, after the client's answer: the outcome is counted,
   * never returned, and a shadow that fails or is slow costs the client nothing.
   */
  mirror(
    served: ServedVersion,
    shadows: ServedVersion[],
    inputs: { tensors: Tensors } | { body: Uint8Array; header: number | undefined },
    rows: number,
    answer: () => Record<string, { data: ArrayLike<unknown> | unknown[]; dims: number[] }>,
    deadline: number,
  ): void {
    for (const shadow of shadows) {
      const labels = { model: served.spec.name, version: shadow.spec.version, serving_version: served.spec.version };
      if (this.shadowRuns >= MAX_SHADOW_RUNS) {
        this.metrics.shadowAgreement.inc({ ...labels, outcome: 'skipped' });
        continue;
      }
      this.shadowRuns++;
      const run =
        'body' in inputs
          ? // The copy the caller made has a buffer of its own, which moves to the shadow's worker: a second shadow needs another.
            shadow.engine
              .inferRest(shadows.length > 1 ? new Uint8Array(inputs.body) : inputs.body, inputs.header, true, { id: 'shadow' }, deadline)
              .then((reply) => decodeRestResponse(reply.body, reply.headerLength))
          : shadow.engine.infer(shadows.length > 1 ? copyTensors(inputs.tensors) : inputs.tensors, rows, deadline);
      run
        .then(
          (shadowed) => {
            shadow.failedInRow = 0;
            const { agree, maxAbs } = compareOutputs(answer(), shadowed);
            this.metrics.shadowAgreement.inc({ ...labels, outcome: agree ? 'agree' : 'disagree' });
            if (Number.isFinite(maxAbs)) this.metrics.shadowDifference.observe({ model: served.spec.name, version: shadow.spec.version }, maxAbs);
          },
          (error: unknown) => {
            this.metrics.shadowAgreement.inc({ ...labels, outcome: 'failed' });
            shadow.failedInRow = (shadow.failedInRow ?? 0) + 1;
            // A shadow that fails every run measures nothing: said once, and shown as not ready in /metrics (mlops_model_ready).
            if (shadow.failedInRow === SHADOW_FAILING)
              this.log(
                `model '${served.spec.name}' shadow version ${shadow.spec.version} failed its last ${SHADOW_FAILING} runs (the last: ${String((error as Error)?.message ?? error).split('\n')[0]}); it is reported not ready until a run succeeds`,
              );
          },
        )
        .finally(() => this.shadowRuns--);
    }
  }

  /** POST /v2/repository/index: every version of every model, with its state. */
  index(): { name: string; version: string; state: ModelState; reason: string }[] {
    return [...this.models.values()].flatMap((held) =>
      held.specs.map((s) => ({ name: held.name, version: s.version, state: held.state, reason: held.reason })),
    );
  }

  /** Every configured version, loaded or not (sha256 empty when not loaded), for /metrics. */
  heldVersions(): HeldVersion[] {
    return [...this.models.values()].flatMap((held) =>
      held.specs.map((spec) => {
        const loaded = held.versions.find((v) => v.spec === spec);
        return {
          name: held.name,
          version: spec.version,
          sha256: loaded?.engine.model.info.sha256 ?? '',
          role: spec.shadow ? ('shadow' as const) : ('serving' as const),
          weight: spec.shadow ? 0 : spec.weight,
          ready: held.state === 'READY' && loaded !== undefined && (loaded.failedInRow ?? 0) < SHADOW_FAILING && loaded.engine.accepting,
        };
      }),
    );
  }

  /** Every version currently loaded. */
  get loaded(): ServedVersion[] {
    return [...this.models.values()].flatMap((held) => held.versions);
  }

  /**
   * Loads a model's versions from their files again (a new file at the same path is picked up):
   * the new engines start beside the old ones, take the traffic, then the old ones are released.
   */
  async load(name: string): Promise<void> {
    await this.changing(name, async (held) => {
      const previous = held.versions;
      await this.loadModel(held);
      await this.releaseVersions(await this.drained(previous));
    });
  }

  async unload(name: string): Promise<void> {
    await this.changing(name, async (held) => {
      const previous = held.versions;
      held.state = 'UNLOADING';
      this.place(held, []);
      await this.releaseVersions(await this.drained(previous));
      held.state = 'UNAVAILABLE';
      held.reason = 'unloaded';
      this.log(`model '${name}' unloaded`);
    });
  }

  /** One load or unload of a model at a time. */
  private async changing(name: string, change: (held: HeldModel) => Promise<void>): Promise<void> {
    const held = this.held(name);
    if (held.changing) throw new BadRequest(`model '${name}' is being loaded or unloaded already; try again when that is done`, 409);
    held.changing = true;
    try {
      await change(held);
    } finally {
      held.changing = false;
    }
  }

  async release(): Promise<{ abandonedRuns: number }> {
    let abandonedRuns = 0;
    for (const held of this.models.values()) {
      abandonedRuns += await this.releaseVersions(held.versions);
      this.place(held, []);
    }
    return { abandonedRuns };
  }

  private async loadModel(held: HeldModel): Promise<void> {
    const wasReady = held.state === 'READY';
    if (!wasReady) held.state = 'LOADING';
    const started: ServedVersion[] = [];
    try {
      for (const spec of held.specs) started.push(await this.startVersion(spec));
    } catch (error) {
      await this.releaseVersions(started);
      if (!wasReady) {
        held.state = 'UNAVAILABLE';
        held.reason = `load failed: ${(error as Error)?.message ?? String(error)}`;
      }
      throw error;
    }
    this.place(held, started);
    held.state = 'READY';
    held.reason = '';
  }

  private place(held: HeldModel, versions: ServedVersion[]): void {
    held.versions = versions;
    held.serving = versions.filter((v) => !v.spec.shadow);
    held.shadows = versions.filter((v) => v.spec.shadow);
    let sum = 0;
    held.cumulative = held.serving.map((v) => (sum += v.spec.weight));
  }

  private async startVersion(spec: ModelSpec): Promise<ServedVersion> {
    const { settings, metrics, log } = this;
    const loaded = spec.profilePath ? await readReferenceProfile(spec.profilePath) : undefined;
    const observed = versionMetrics(metrics, spec.name, spec.version);
    let profiling: ServerProfiling | undefined;
    const engine = await startEngine({
      modelPath: spec.path,
      modelName: spec.name,
      modelVersion: spec.version,
      expectedSha256: spec.expectedSha256,
      intraOpThreads: settings.intraOpThreads,
      allowNonFinite: settings.allowNonFinite,
      workers: spec.workers,
      inlineMaxMs: settings.inlineMaxMs,
      batching: spec.batching,
      log,
      onRun: (rows, seconds) => {
        observed.batchSize.observe(rows);
        observed.inferenceSeconds.observe(seconds);
      },
      onQueued: (seconds) => observed.queueSeconds.observe(seconds),
      onDeadline: observed.deadlineExceeded,
      onWorkerReplaced: observed.workersReplaced,
      profile: loaded?.profile,
      explainSamples: settings.explain.samples,
      explainPatch: settings.explain.patch,
      memory: settings.memory,
      onProfiled: (indices, rows) => profiling?.live?.add(indices, rows),
    });
    const { model } = engine;
    profiling = serverProfiling(loaded, engine.profileProblem, { name: model.name, version: model.version, sha256: model.info.sha256 }, metrics.registry);
    // One model says nothing of which; several say which model and version each line is about.
    const label = this.several ? `model '${spec.name}' version ${spec.version}${spec.shadow ? ' (shadow)' : ''}: ` : '';
    if (engine.profileProblem) log(`warning: ${label}not profiling live traffic: the reference profile does not match the model: ${engine.profileProblem}`);
    else if (loaded && profiling.live) {
      const { features, prediction } = loaded.profile;
      const counted = [
        `${features.length} features`,
        ...(profiling.live.hasPrediction ? [`the predicted ${prediction?.kind === 'value' ? 'value' : 'class'}`] : []),
      ];
      log(
        `${label}profiling live traffic against reference profile ${loaded.sha256.slice(0, 12)}: ${counted.join(' and ')}${loaded.profile.unavailable ? ` (${loaded.profile.unavailable})` : ''}`,
      );
    }
    // A model folder's preprocessing and labels: what the raw routes take and answer.
    const processing = await serveProcessing(model, spec.processing).catch(async (error) => {
      await engine.release();
      throw error;
    });
    if (processing) log(`${label}${describePlan(processing.plan).join('; ')}`);
    const metadata = {
      name: model.name,
      versions: [model.version],
      platform: 'onnxruntime_onnx',
      inputs: model.inputs.map(({ name, datatype, shape }) => ({ name, datatype, shape })),
      outputs: model.outputs.map(({ name, datatype, shape }) => ({ name, datatype, shape })),
      // An extension field: clients that send an image or a text, and read labels, find how here.
      ...(processing
        ? {
            processing: {
              input: processing.kind ?? null,
              labels: processing.labels?.names ?? null,
              label_outputs: processing.labels ? [LABEL_OUTPUT, SCORE_OUTPUT] : [],
            },
          }
        : {}),
    };
    return { spec, engine, profiling, recordModel: recordModelOf(model), metadata, processing };
  }

  /** The model's metadata: the named version's tensors, every version listed. */
  metadata(name: string | undefined, version?: string): Record<string, unknown> {
    const served = this.primary(name, version);
    if (version !== undefined) return served.metadata;
    return { ...served.metadata, versions: this.held(name).specs.map((s) => s.version) };
  }

  /** Waits (up to settings.drainMs) until no request is inside these versions: releasing them would fail those requests. */
  private async drained(versions: ServedVersion[]): Promise<ServedVersion[]> {
    const until = performance.now() + this.settings.drainMs;
    while (versions.some((v) => v.engine.active > 0) && performance.now() < until) await new Promise((r) => setTimeout(r, 5));
    return versions;
  }

  private async releaseVersions(versions: ServedVersion[]): Promise<number> {
    let abandoned = 0;
    for (const v of versions) {
      v.profiling.remove();
      abandoned += (await v.engine.release()).abandonedRuns;
    }
    return abandoned;
  }
}

/** What is wrong with one model's versions as configured, or null. */
function specProblem(held: HeldModel): string | null {
  const seen = new Set<string>();
  for (const s of held.specs) {
    if (seen.has(s.version)) return `model '${held.name}' lists version '${s.version}' twice`;
    seen.add(s.version);
    if (!s.shadow && !(s.weight >= 0)) return `model '${held.name}' version '${s.version}': weight ${s.weight} is not a share (0 or more)`;
  }
  const serving = held.specs.filter((s) => !s.shadow);
  if (serving.length === 0) return `model '${held.name}' has only shadow versions: one must serve`;
  if (serving.length > 1 && serving.reduce((n, s) => n + s.weight, 0) <= 0) return `model '${held.name}': the serving versions' weights add up to 0`;
  return null;
}

type Answer = Record<string, { data: ArrayLike<unknown> | unknown[]; dims: number[] }>;

/**
 * A shadow's answer against the serving one. Agree: each output that holds a score per class
 * ([rows, classes], more than one) picks the same class in every row; every other numeric value is
 * within 1e-4 relative; other values are equal. maxAbs: the largest absolute difference of numbers.
 */
export function compareOutputs(served: Answer, shadow: Answer | Tensors): { agree: boolean; maxAbs: number } {
  let agree = true;
  let maxAbs = 0;
  let numeric = false;
  for (const [name, a] of Object.entries(served)) {
    const b = (shadow as Record<string, Tensor | undefined>)[name];
    if (!b || b.data.length !== a.data.length) {
      agree = false;
      continue;
    }
    const x = a.data as ArrayLike<unknown>;
    const y = b.data as ArrayLike<unknown>;
    const width = a.dims.length === 2 ? a.dims[1] : 0;
    if (typeof x[0] === 'number' || typeof x[0] === 'bigint') {
      numeric = true;
      for (let i = 0; i < x.length; i++) {
        const d = Math.abs(Number(x[i]) - Number(y[i]));
        if (d > maxAbs || Number.isNaN(d)) maxAbs = Number.isNaN(d) ? Infinity : d;
      }
      if (width > 1) {
        for (let r = 0; r * width < x.length; r++) if (argmax(x, r * width, width) !== argmax(y, r * width, width)) agree = false;
      } else {
        for (let i = 0; i < x.length; i++) if (!(Math.abs(Number(x[i]) - Number(y[i])) <= 1e-4 * Math.max(1, Math.abs(Number(x[i]))))) agree = false;
      }
    } else {
      for (let i = 0; i < x.length; i++) if (String(x[i]) !== String(y[i])) agree = false;
    }
  }
  return { agree, maxAbs: numeric ? maxAbs : NaN };
}

function argmax(data: ArrayLike<unknown>, start: number, width: number): number {
  let best = 0;
  for (let k = 1; k < width; k++) if (Number(data[start + k]) > Number(data[start + best])) best = k;
  return best;
}
