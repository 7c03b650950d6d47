import type { TargetConfig } from '../config/defaults.js';
import type { DeployContext, Release } from '../targets/types.js';

/** One batch scoring job as a platform runs it: the version's image over object storage. */
export interface BatchJob {
  /** A name for the job, unique per run: a DNS label (Kubernetes Job, SageMaker and Vertex job names). */
  name: string;
  release: Release;
  /** The input: an s3://, gs:// or az:// URI of a file or a prefix. */
  input: string;
  /** Where the outputs go: an s3://, gs:// or az:// URI. */
  output: string;
  /** Shards: the Kubernetes Job's completions; each index scores one shard (MLOPS_BATCH_SHARDS / JOB_COMPLETION_INDEX). */
  shards: number;
  /** The output format: csv, jsonl or parquet. */
  format: 'csv' | 'jsonl' | 'parquet';
  /** The image's batch mode settings, as environment variables (MLOPS_BATCH_*), for platforms that run it. */
  env: Record<string, string>;
  /** How often the platform is asked how the job goes; undefined: the platform's own pace (tests pass a few ms). */
  pollIntervalMs?: number;
}

/** A file --plan writes: the declarative form of the job (a Job's YAML, an API request's JSON). */
export interface PlanFile {
  name: string;
  content: string;
}

export type BatchJobOutcome =
  | { status: 'planned' }
  | { status: 'completed'; detail: Record<string, unknown> }
  | { status: 'failed'; message: string; logs: string; detail: Record<string, unknown> };

/** A target's platform as a batch engine: one file each under src/batch/platforms/, registered in platforms/index.ts. */
export interface BatchPlatform<T extends TargetConfig = TargetConfig> {
  readonly type: T['type'];
  /** The declarative form: what --plan <dir> writes. */
  plan(target: T, job: BatchJob, ctx: DeployContext): PlanFile[];
  /**
   * Submits the job, waits for it, reports progress through ctx.log and fails with the platform's own reason.
   * In a dry run the exec seam records every command and runs none.
   */
  run(target: T, job: BatchJob, ctx: DeployContext): Promise<BatchJobOutcome>;
}
