/** Every batch platform, by target type. Adding one means a file and a line here; commands do not change. */
import type { TargetConfig } from '../../config/defaults.js';
import type { BatchPlatform } from '../platform.js';
import { kubernetesBatch } from './kubernetes.js';
import { sageMakerBatch } from './sagemaker.js';
import { vertexBatch } from './vertex.js';

const PLATFORMS: { [K in TargetConfig['type']]?: BatchPlatform<Extract<TargetConfig, { type: K }>> } = {
  kubernetes: kubernetesBatch,
  sagemaker: sageMakerBatch,
  vertex: vertexBatch,
};

/** The target types a batch job can run on. */
export const BATCH_TYPES = Object.keys(PLATFORMS) as TargetConfig['type'][];

/** The platform that runs batch jobs on this type of target; undefined: none does. */
export function batchPlatform(type: TargetConfig['type']): BatchPlatform | undefined {
  return PLATFORMS[type];
}
