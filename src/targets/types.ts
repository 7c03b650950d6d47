import type { ClientSecurity } from '../protocol/client-security.js';
import type { Config, TargetConfig } from '../config/defaults.js';
import type { Tensors } from '../model/session.js';
import type { TensorSignature } from '../predict/predictor.js';
import type { TokenCredential } from '@azure/core-auth';
import type { ExecSeam } from './exec.js';
import type { LockAttempt, LockHolder } from './lock.js';

/** What a deploy puts on a target: one version of the model image. */
export interface Release {
  version: string;
  /** What the target runs: a local image reference, or registry/repo@sha256:... for remote targets. */
  image: string;
  digest: string | null;
  modelName: string;
  modelSha256: string | null;
  /** The model's inputs and outputs, from the image's labels: what a smoke request sends and expects. */
  signature?: ModelSignature | null;
  /** An image of several models (label mlops.models): the others, which the smoke test asks too. */
  otherModels?: string[];
  /** What the model takes raw (label mlops.model.takes): the smoke request is then an image or a sentence, as clients send. */
  takes?: 'image' | 'text';
}

export interface ModelSignature {
  inputs: TensorSignature[];
  outputs: TensorSignature[];
}

export type FailureReason = 'crash-loop' | 'health-timeout' | 'smoke-failure' | 'rollout-failed';

/** Adapters return what happened; expected failures are results, not exceptions. */
export type DeployOutcome =
  | { status: 'deployed'; release: Release; url: string | null; previous: Release | null }
  | { status: 'rolled-back'; release: Release; reason: FailureReason; message: string; logs: string; restored: Release }
  | { status: 'failed'; release: Release; reason: FailureReason; message: string; logs: string; restored: null }
  | { status: 'planned'; release: Release }
  | { status: 'written'; release: Release; files: string[] };

export interface TargetStatus {
  target: string;
  type: TargetConfig['type'];
  deployed: boolean;
  version: string | null;
  image: string | null;
  health: string;
  url: string | null;
  startedAt: string | null;
  detail: Record<string, unknown>;
}

export interface DeployContext {
  targetName: string;
  config: Config;
  projectDir: string;
  env: NodeJS.ProcessEnv;
  exec: ExecSeam;
  /** How the Azure targets' SDKs authenticate and whom they trust. */
  azure: AzureSeam;
  dryRun: boolean;
  /** --output: write manifests here instead of applying them (kubernetes). */
  outputDir?: string;
  log: (line: string) => void;
  /**
   * The one-row request a smoke test sends, as model.shapes and model.inputData make it; throws an
   * input error (exit 2) when a dynamic dimension has no size.
   */
  sampleInputs: (inputs: TensorSignature[]) => Promise<Tensors>;
  /** One inference against a base URL; throws with the reason when the answer is not well formed. */
  smoke: (baseUrl: string, release: Release, headers?: Record<string, string>, security?: ClientSecurity) => Promise<void>;
  /**
   * Marks a stage of a deploy (candidate-created, candidate-ready, old-stopped, replaced). The crash
   * tests pass one that ends the process at a stage, as a kill -9 or a dead CI runner would
   * (test/e2e/deploy-killed-at.mjs); the CLI's does nothing.
   */
  checkpoint: (stage: string) => void;
}

/** What `recover` found an interrupted deploy had left, and what it did about it. */
export interface Recovery {
  /** The version the interrupted deploy was putting on the target. */
  candidate: { version: string; image: string };
  /** restored: it had not passed its gates and what served before serves again; completed: it had, and its swap was finished. */
  outcome: 'restored' | 'completed';
  /** What serves now. */
  serving: Release | null;
  message: string;
}

export interface TargetAdapter<T extends TargetConfig = TargetConfig> {
  readonly type: T['type'];
  /** Remote targets pull from a registry, so they need a pushed image. */
  readonly needsRegistry: boolean;
  /** What `--output <dir>` writes instead of deploying (for GitOps); null: this target has no such form, and --output is refused. */
  readonly output: string | null;
  deploy(target: T, release: Release, previous: Release | null, ctx: DeployContext): Promise<DeployOutcome>;
  /**
   * What a dry run runs instead of deploy, for a platform whose calls no seam can record (the Docker
   * engine's API): it says what deploy would do. Absent: a dry run runs deploy, whose every command
   * and API write the seams record and none of which they send.
   */
  plan?(target: T, release: Release, ctx: DeployContext): Promise<void>;
  /** Tries to take the target's lock for a deploy or rollback: the platform's own where it has one (see lock.ts). */
  lock(target: T, ctx: DeployContext, holder: LockHolder): Promise<LockAttempt>;
  /**
   * Finds what an interrupted deploy left (run with the lock held, so no live process owns it) and
   * resolves it: an unchecked candidate goes and `current`, the last version the history records as
   * serving, serves again. Null: nothing was left.
   */
  recover(target: T, ctx: DeployContext, current: Release | null): Promise<Recovery | null>;
  status(target: T, ctx: DeployContext): Promise<TargetStatus>;
  /**
   * A base URL for each serving replica, reachable from here (`mlops monitor`
   * sums their live profiles); close() ends whatever was opened to reach them.
   */
  replicas(target: T, ctx: DeployContext): Promise<Replicas>;
  /**
   * What the serving replicas wrote to stdout since `since` (all they kept when undefined), where the
   * inference log's stdout sink writes; `mlops monitor --labels` reads its records from it.
   */
  inferenceLogs(target: T, ctx: DeployContext, since: Date | undefined): Promise<LogText[]>;
  /**
   * The versions the platform itself records as having run there, oldest first (`mlops history
   * --rebuild`): Kubernetes ReplicaSets, Cloud Run revisions; elsewhere what serves now.
   */
  recordedReleases(target: T, ctx: DeployContext): Promise<RecordedRelease[]>;
}

export interface RecordedRelease {
  version: string;
  image: string;
  /** When it was deployed, as the platform says. */
  at: string | null;
  /** It is what serves now. */
  serving: boolean;
}

/** What serves now, for platforms that keep no record of earlier versions. */
export function servingOnly(status: TargetStatus): RecordedRelease[] {
  return status.deployed && status.version && status.image ? [{ version: status.version, image: status.image, at: status.startedAt, serving: true }] : [];
}

export interface LogText {
  /** Where it came from: a container, a pod. */
  from: string;
  text: string;
}

export interface Replicas {
  urls: string[];
  /** The urls are port-forwards on loopback to servers speaking TLS: their certificates name the service, not 127.0.0.1. */
  loopbackTls?: boolean;
  close(): Promise<void>;
}

/** How the Azure SDKs reach Azure: tests put a local ARM stand-in's CA and a fixed token here. */
export interface AzureSeam {
  credential(): TokenCredential;
  /** Extra CA certificates (PEM) the SDK pipeline trusts. */
  ca?: string;
}
