/**
 * The one rollout every target goes through. An adapter says how its platform does each step (start a
 * version, move traffic, read health, go back); this module decides their order, the canary steps and
 * the bakes between them, when a failure sends traffic back, and what the outcome says. The lock, the
 * history and recovery of an interrupted deploy are deploy.ts's, around this.
 */
import type { DeployContext, DeployOutcome, FailureReason, Release } from './types.js';

export interface Failure {
  reason: FailureReason;
  message: string;
}

/** A step's verdict: undefined when it passed. */
export type Check = Failure | undefined;

/** How far a rollout got: what a failure has to undo depends on it. */
export type RolloutStage = 'create' | 'ready' | 'smoke' | 'traffic';

/** What an adapter's fallBack did after a failure. */
export interface FallBack {
  /** What serves again; null: nothing served before, or it could not be put back. */
  restored: Release | null;
  /** The new version's last log lines, for the report. */
  logs: string;
  /** The failure's message with what happened while going back, when that adds something. */
  message?: string;
}

/** A platform's steps. Each returns a Failure for an expected failure and throws for an error (exit 3). */
export interface PlatformSteps {
  /**
   * Something other than this release serves now: its traffic moves in the canary steps, and a failure
   * goes back to it. Read when traffic is about to move, so it may depend on what create() learnt.
   */
  readonly serving: boolean;
  /** The platform gives a new version its first share of traffic as it starts it (KServe, Vertex AI, a new Cloud Run service). */
  readonly startsWithTraffic?: boolean;
  /** The health signal still means something with all traffic moved (alarms, readiness of the final spec): it is baked and watched then too. */
  readonly watchesFullTraffic?: boolean;
  /** What the bake lines call the new version ("version 7", "revision app--v2") and what they watch. */
  describe(): { candidate: string; watching?: string };
  /** Starts the new version with `share` percent of traffic (0 unless startsWithTraffic). */
  create(share: number): Promise<Check>;
  /** Waits until the new version is ready; where create waits itself, there is no such step. */
  ready?(): Promise<Check>;
  /** One request through the platform to the new version, before it takes traffic (at `share` where it started with some). */
  smoke?(): Promise<Check>;
  /** Sends a copy of `percent` of the traffic to the new version while the old one answers (Azure ML's mirror). */
  mirror?(percent: number): Promise<void>;
  /** Gives the new version `percent` of the traffic. Absent: the platform moved it itself (a rolling update, SageMaker's blue/green). */
  shift?(percent: number): Promise<Check>;
  /** After a bake: the platform's health signal at `percent` (0: while mirrored). Default: the smoke test again. */
  watch?(percent: number): Promise<Check>;
  /** With all traffic on the new version: what no longer serves is removed or stopped. Returns the URL clients use. */
  promote(): Promise<string | null>;
  /** After a failure at `stage`: what served before serves again where it can, and the new version's logs. */
  fallBack(failure: Failure, stage: RolloutStage): Promise<FallBack>;
}

export interface TrafficPlan {
  /** Rising percentages ending at 100. */
  canary: number[];
  /** How long each step bakes before its health is read. */
  waitIntervalSeconds: number;
  /** Percent of traffic mirrored to the new version before any is moved (0: none). */
  mirror?: number;
}

/**
 * create → ready → smoke → (mirror) → each canary step: shift, bake, watch → promote; a failure at any
 * step goes to fallBack. Checkpoints mark the stages the crash tests stop at.
 */
export async function rollout(ctx: DeployContext, release: Release, previous: Release | null, plan: TrafficPlan, steps: PlatformSteps): Promise<DeployOutcome> {
  const platform = ctx.dryRun ? judgingNothing(steps) : steps;
  // The first share is decided before anything starts: whether something serves is known by then wherever it matters.
  const first = platform.startsWithTraffic ? (platform.serving ? plan.canary[0] : 100) : 0;
  let stage: RolloutStage = 'create';
  let failure = await platform.create(first);
  if (!failure) {
    ctx.checkpoint('candidate-created');
    stage = 'ready';
    failure = await platform.ready?.();
  }
  if (!failure) {
    stage = 'smoke';
    failure = await platform.smoke?.();
  }
  if (!failure) {
    ctx.checkpoint('candidate-ready');
    stage = 'traffic';
    failure = await moveTraffic(ctx, plan, platform, first);
  }
  if (!failure) {
    ctx.checkpoint('replaced');
    const url = await platform.promote();
    return ctx.dryRun ? { status: 'planned', release } : { status: 'deployed', release, url, previous };
  }
  const after = await platform.fallBack(failure, stage);
  const outcome = { release, reason: failure.reason, message: after.message ?? failure.message, logs: after.logs };
  return after.restored ? { status: 'rolled-back', ...outcome, restored: after.restored } : { status: 'failed', ...outcome, restored: null };
}

/**
 * A dry run still takes each step that reads (readiness, the smoke test, health), so its plan shows
 * the commands, but judges none of their answers: nothing it would judge runs.
 */
function judgingNothing(steps: PlatformSteps): PlatformSteps {
  const unjudged = (look: ((...args: never[]) => Promise<Check>) | undefined) => look && (async (...args: never[]) => void (await look(...args)));
  return Object.create(steps, {
    ready: { value: unjudged(steps.ready?.bind(steps)) },
    smoke: { value: unjudged(steps.smoke?.bind(steps)) },
    watch: { value: unjudged(steps.watch?.bind(steps)) },
  }) as PlatformSteps;
}

async function moveTraffic(ctx: DeployContext, plan: TrafficPlan, platform: PlatformSteps, first: number): Promise<Check> {
  if (!platform.shift) return undefined;
  const serving = platform.serving;
  const watch = (percent: number) => (platform.watch ? platform.watch(percent) : platform.smoke?.());
  if (serving && platform.mirror && plan.mirror) {
    await platform.mirror(plan.mirror);
    await bake(ctx, plan.waitIntervalSeconds, `${plan.mirror}% of traffic mirrored to ${platform.describe().candidate}`);
    const failure = await watch(0);
    if (failure) return failure;
  }
  for (const percent of serving ? plan.canary : [100]) {
    // The share the version started with was smoke-tested a moment ago: read again only after a bake.
    if (percent === first && plan.waitIntervalSeconds === 0) continue;
    if (percent !== first) {
      const failure = await platform.shift(percent);
      if (failure) return failure;
    }
    if (percent === 100 && !platform.watchesFullTraffic) break;
    const { candidate, watching } = platform.describe();
    await bake(ctx, plan.waitIntervalSeconds, `${percent}% of traffic on ${candidate}${watching ? `, watching ${watching}` : ''}`);
    const failure = await watch(percent);
    if (failure) return failure;
  }
  return undefined;
}

/** Waits a canary step's bake (none in a dry run), saying what is baking. */
async function bake(ctx: DeployContext, seconds: number, what: string): Promise<void> {
  if (ctx.dryRun || seconds === 0) return;
  ctx.log(`baking ${what} for ${seconds} s`);
  await new Promise((r) => setTimeout(r, seconds * 1000));
}
