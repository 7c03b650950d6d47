/**
 * The server's live profile: per-slot counts of the bins its rows fell in,
 * since start and over a sliding window of the last rows, exposed as a JSON
 * document and as Prometheus counters. Only counts, never inputs.
 */
import { Counter, type Registry } from 'prom-client';
import { countedSlots, slotWidth, type ReferenceProfile } from './profile.js';

export interface SlotCounts {
  /** Counts since start: [below, ...bins, above, missing], or [...classes, other]. */
  total: number[];
  window: number[];
}

/** GET /v2/models/{name}/profile */
export interface ProfileDocument {
  model: { name: string; version: string; sha256: string };
  /** sha256 of the reference profile file; the `reference` label of the counters carries its first 12 digits. */
  referenceSha256: string | null;
  reference: ReferenceProfile | null;
  /** Why there is no reference to compare with, when there is none. */
  unavailable?: string;
  live: {
    rows: number;
    windowRows: number;
    window: { rows: number };
    features: Record<string, SlotCounts>;
    prediction: SlotCounts | null;
  };
}

export class LiveProfile {
  readonly slotNames: string[];
  /** The last slot counts the predictions. */
  readonly hasPrediction: boolean;
  private readonly widths: number[];
  private readonly totals: Float64Array[];
  private readonly windowCounts: Float64Array[];
  private readonly ring: Uint8Array;
  private readonly windowRows: number;
  private next = 0;
  private filled = 0;
  rows = 0;

  constructor(readonly profile: ReferenceProfile) {
    const { features, prediction } = countedSlots(profile);
    this.slotNames = features.map((f) => f.name);
    this.widths = features.map(slotWidth);
    this.hasPrediction = prediction !== null;
    if (prediction) {
      this.slotNames.push('prediction');
      this.widths.push(slotWidth(prediction));
    }
    this.totals = this.widths.map((w) => new Float64Array(w));
    this.windowCounts = this.widths.map((w) => new Float64Array(w));
    this.windowRows = profile.windowRows;
    this.ring = new Uint8Array(this.windowRows * this.widths.length);
  }

  get slots(): number {
    return this.widths.length;
  }

  /** Adds rows of bin indices (rows x slots, as RowBinner makes them). */
  add(indices: Uint8Array, rows: number): void {
    const slots = this.widths.length;
    if (slots === 0 || indices.length !== rows * slots) return;
    const ring = this.ring;
    for (let r = 0; r < rows; r++) {
      const at = this.next * slots;
      const evict = this.filled === this.windowRows;
      for (let s = 0; s < slots; s++) {
        const bin = indices[r * slots + s];
        this.totals[s][bin]++;
        if (evict) this.windowCounts[s][ring[at + s]]--;
        this.windowCounts[s][bin]++;
        ring[at + s] = bin;
      }
      if (!evict) this.filled++;
      this.next = this.next + 1 === this.windowRows ? 0 : this.next + 1;
    }
    this.rows += rows;
  }

  total(slot: number): Float64Array {
    return this.totals[slot];
  }

  snapshot(): ProfileDocument['live'] {
    const counts = (s: number): SlotCounts => ({ total: Array.from(this.totals[s]), window: Array.from(this.windowCounts[s]) });
    const hasPrediction = this.hasPrediction;
    const featureSlots = hasPrediction ? this.slots - 1 : this.slots;
    return {
      rows: this.rows,
      windowRows: this.windowRows,
      window: { rows: this.filled },
      features: Object.fromEntries(this.slotNames.slice(0, featureSlots).map((name, s) => [name, counts(s)])),
      prediction: hasPrediction ? counts(this.slots - 1) : null,
    };
  }
}

/**
 * The live counts as Prometheus counters, read at scrape time from the arrays
 * above (a labelled prom-client inc() per row would cost more than the model
 * on small ones). `reference` tells apart the counts of two versions whose bins
 * differ while both serve (a canary): sums are only meaningful within one.
 * Several profiles (the models and versions of one server) share a registry:
 * each counter is registered once and collects every profile added to it, with
 * `model` and `version` labels. Returns what removes the profile again (an unload).
 */
export function profileMetrics(registry: Registry, live: LiveProfile, referenceSha256: string, model: { name: string; version: string }): () => void {
  let profiles = PROFILES.get(registry);
  if (!profiles) PROFILES.set(registry, (profiles = new Set()));
  const entry: CountedProfile = {
    live,
    labels: { reference: referenceSha256.slice(0, 12), model: model.name, version: model.version },
    slots: countedSlots(live.profile),
  };
  profiles.add(entry);
  const prediction = entry.slots.prediction;
  for (const name of [
    'mlops_feature_bin_total',
    'mlops_feature_out_of_range_total',
    'mlops_feature_missing_total',
    'mlops_profiled_rows_total',
    ...(prediction ? [prediction.kind === 'value' ? 'mlops_prediction_bin_total' : 'mlops_prediction_class_total'] : []),
  ]) {
    if (!registry.getSingleMetric(name)) registerCounter(registry, name as keyof typeof COUNTERS, profiles);
  }
  return () => void profiles.delete(entry);
}

interface CountedProfile {
  live: LiveProfile;
  labels: { reference: string; model: string; version: string };
  slots: ReturnType<typeof countedSlots>;
}

const PROFILES = new WeakMap<Registry, Set<CountedProfile>>();
type Emit = (labels: Record<string, string>, value: number) => void;

/** Each counter: its help, its own labels, and the series one profile gives it. */
const COUNTERS = {
  mlops_feature_bin_total: {
    help: "Profiled values per feature and reference bin (0 = the reference's lowest decile by default)",
    labels: ['feature', 'bin'],
    series: ({ live, slots }: CountedProfile, set: Emit) =>
      slots.features.forEach((f, s) => {
        const counts = live.total(s);
        for (let b = 0; b < f.edges.length - 1; b++) set({ feature: f.name, bin: String(b) }, counts[b + 1]);
      }),
  },
  mlops_feature_out_of_range_total: {
    help: "Profiled values below the reference's minimum or above its maximum",
    labels: ['feature', 'side'],
    series: ({ live, slots }: CountedProfile, set: Emit) =>
      slots.features.forEach((f, s) => {
        const counts = live.total(s);
        set({ feature: f.name, side: 'below' }, counts[0]);
        set({ feature: f.name, side: 'above' }, counts[f.edges.length]);
      }),
  },
  mlops_feature_missing_total: {
    help: 'Profiled values that were NaN',
    labels: ['feature'],
    series: ({ live, slots }: CountedProfile, set: Emit) => slots.features.forEach((f, s) => set({ feature: f.name }, live.total(s)[f.edges.length + 1])),
  },
  mlops_prediction_bin_total: {
    help: 'Predicted values per reference bin; below and above the reference\'s range as bin="below" and bin="above"',
    labels: ['bin'],
    series: ({ live, slots }: CountedProfile, set: Emit) => {
      if (slots.prediction?.kind !== 'value') return;
      const counts = live.total(live.slots - 1);
      const bins = slots.prediction.edges!.length - 1;
      set({ bin: 'below' }, counts[0]);
      for (let b = 0; b < bins; b++) set({ bin: String(b) }, counts[b + 1]);
      set({ bin: 'above' }, counts[bins + 1]);
      set({ bin: 'missing' }, counts[bins + 2]);
    },
  },
  mlops_prediction_class_total: {
    help: 'Rows per predicted class; class="other" for a value outside the known classes',
    labels: ['class'],
    series: ({ live, slots }: CountedProfile, set: Emit) => {
      if (!slots.prediction || slots.prediction.kind === 'value') return;
      const counts = live.total(live.slots - 1);
      slots.prediction.classes!.forEach((c, i) => set({ class: c }, counts[i]));
      set({ class: 'other' }, counts[slots.prediction.classes!.length]);
    },
  },
  mlops_profiled_rows_total: {
    help: 'Rows counted in the live profile',
    labels: [],
    series: ({ live }: CountedProfile, set: Emit) => set({}, live.rows),
  },
} as const;

function registerCounter(registry: Registry, name: keyof typeof COUNTERS, profiles: Set<CountedProfile>): void {
  const { help, labels, series } = COUNTERS[name];
  new Counter({
    name,
    help,
    labelNames: [...labels, 'reference', 'model', 'version'],
    registers: [registry],
    collect() {
      this.reset();
      for (const profile of profiles) series(profile, (own, value) => this.inc({ ...own, ...profile.labels }, value));
    },
  });
}
