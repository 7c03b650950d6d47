import path from 'node:path';
import type { Config } from '../config/defaults.js';
import { inputError } from '../errors.js';
import { openHoldout } from '../holdout/open.js';
import { openTarget, type OpenedTarget, type TargetFlags } from '../predict/target.js';
import { tensorToPng } from '../processing/image.js';
import { createPreprocessor, processingFor, type ProcessingPlan } from '../processing/plan.js';
import type { TextTokenizer } from '../processing/text.js';
import { explainTextsGlobally, type TokenExplanation } from './tokens.js';
import { explainGlobally, tabularInput, type ExplainSettings, type GlobalExplanation } from './global.js';
import { explainImagesGlobally, imageInput, type GlobalOcclusion } from './global-occlusion.js';

export interface ExplainFlags extends TargetFlags {
  holdout?: string;
  labels?: string;
  samples?: number;
  backgroundRows?: number;
  rows?: number;
  repeats?: number;
  metric?: string;
}

const count = (flag: string, value: number | undefined, min: number) => {
  if (value !== undefined && (!Number.isInteger(value) || value < min)) throw inputError(`${flag} ${value}: expected a whole number of at least ${min}`);
  return value;
};

/** explain's settings: the config's, each flag given checked and put in its place. */
function explainSettings(flags: ExplainFlags, config: Config): ExplainSettings {
  return {
    ...config.explain,
    samples: count('--samples', flags.samples, 2) ?? config.explain.samples,
    backgroundRows: count('--background-rows', flags.backgroundRows, 1) ?? config.explain.backgroundRows,
    rows: count('--rows', flags.rows, 1) ?? config.explain.rows,
    repeats: count('--repeats', flags.repeats, 1) ?? config.explain.repeats,
    metric: flags.metric ?? config.explain.metric,
  };
}

/** The holdout to explain over (--holdout, else test.holdout) and the config's labels file, which only goes with the config's holdout. */
function holdoutFiles(options: { cwd: string; projectDir: string; config: Config; flags: ExplainFlags }): { holdoutPath: string; labelsFromConfig?: string } {
  const { flags, config } = options;
  const holdoutPath = flags.holdout ?? (config.test.holdout ? path.relative(options.cwd, path.resolve(options.projectDir, config.test.holdout)) : undefined);
  if (!holdoutPath) throw inputError('no holdout given', 'pass --holdout <file> or set test.holdout in config');
  const labelsFromConfig =
    !flags.holdout && config.test.labelsFile ? path.relative(options.cwd, path.resolve(options.projectDir, config.test.labelsFile)) : undefined;
  return { holdoutPath, labelsFromConfig };
}

/** A text model from an export folder: occlusion by token, through its own tokenizer. */
async function explainTexts(options: {
  cwd: string;
  config: Config;
  target: OpenedTarget;
  processing: ProcessingPlan;
  tokenizer: TextTokenizer;
  holdoutPath: string;
  settings: ExplainSettings;
  onProgress?: (line: string) => void;
}): Promise<TokenExplanation> {
  const { config, target, processing, tokenizer, holdoutPath } = options;
  const holdout = await openHoldout({
    cwd: options.cwd,
    holdout: holdoutPath,
    inputs: target.predictor.inputs,
    label: config.test.label,
    labelOptional: true,
    features: config.test.features,
    processing,
  });
  return await explainTextsGlobally({
    predictor: target.predictor,
    tokenizer,
    maskId: tokenizer.maskId(processing.text!.tokenizerConfig),
    holdout: { ...holdout, file: holdoutPath },
    test: config.test,
    settings: options.settings,
    classNames: processing.labels?.names,
    onProgress: options.onProgress,
  });
}

/** `mlops explain`: the model in-process unless --image or --url says where, over the holdout. */
export async function runExplain(options: {
  cwd: string;
  projectDir: string;
  config: Config;
  env: NodeJS.ProcessEnv;
  flags: ExplainFlags;
  onProgress?: (line: string) => void;
}): Promise<GlobalExplanation | GlobalOcclusion | TokenExplanation> {
  const { flags, config } = options;
  const settings = explainSettings(flags, config);
  const { holdoutPath, labelsFromConfig } = holdoutFiles(options);
  const local = flags.image === undefined && flags.url === undefined;
  const target = await openTarget({
    flags: { ...flags, local: local || flags.local },
    cwd: options.cwd,
    projectDir: options.projectDir,
    config,
    env: options.env,
    purpose: 'explain',
  });
  try {
    const processing = await processingFor(target.modelPath, target.predictor, config.model);
    const tokenizer = processing?.text ? createPreprocessor(processing)?.tokenizer : undefined;
    if (tokenizer) return await explainTexts({ ...options, target, processing: processing!, tokenizer, holdoutPath, settings });
    // What cannot be explained is refused before the holdout is read.
    const image = imageInput(target.predictor);
    if (!image) tabularInput(target.predictor);
    const holdout = await openHoldout({
      cwd: options.cwd,
      holdout: holdoutPath,
      labels: flags.labels ?? labelsFromConfig,
      inputs: target.predictor.inputs,
      label: config.test.label,
      labelOptional: image !== null,
      features: config.test.features,
      processing,
    });
    // A model folder's image preprocessing, undone: the report draws each map over the picture the model saw.
    const pixels = processing?.image;
    const picture = pixels?.height && pixels.width ? (row: Float64Array) => tensorToPng(row, pixels, pixels.height!, pixels.width!) : undefined;
    // An image model: occlusion, averaged over the sampled rows (labels are not needed).
    if (image)
      return await explainImagesGlobally({
        predictor: target.predictor,
        image,
        holdout: { ...holdout, file: holdoutPath },
        test: config.test,
        settings: { ...settings, patch: config.explain.patch },
        onProgress: options.onProgress,
        picture,
      });
    return await explainGlobally({
      predictor: target.predictor,
      holdout: { ...holdout, file: holdoutPath },
      test: config.test,
      settings,
      onProgress: options.onProgress,
    });
  } finally {
    await target.close();
  }
}
