/** The image and text model folders of fixtures/, and the processing plan read from one. */
import { inspectModel } from '../../src/model/inspect.js';
import { loadProcessing, servableSignature, type ProcessingPlan } from '../../src/processing/plan.js';
import { fixture } from '../helpers.js';

export const IMAGE = fixture('shapes_image');
export const TEXT = fixture('text_topic');

export async function planOf(folder: string, overrides = {}): Promise<ProcessingPlan> {
  const info = await inspectModel(folder);
  return (await loadProcessing(info.path, servableSignature(info), overrides))!;
}
