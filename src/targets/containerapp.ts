import type { ContainerAppTarget } from '../config/defaults.js';
import type { TargetAdapter } from './types.js';
export const containerAppAdapter = {} as TargetAdapter<ContainerAppTarget>;
