import type { Config } from '../config/defaults.js';
import { openHoldout } from '../holdout/open.js';
import { openTarget, type HoldoutRun, type OpenedTarget } from '../predict/target.js';
import { tensorToPng } from '../processing/image.js';
import { createPreprocessor, processingFor, type ProcessingPlan } from '../processing/plan.js';
import type { TextTokenizer } from '../processing/text.js';
import { explainTextsGlobally, type TokenExplanation } from './tokens.js';
import { explainGlobally, tabularInput, type ExplainSettings, type GlobalExplanation } from './global.js';
import { explainImagesGlobally, imageInput, type GlobalOcclusion } from './global-occlusion.js';

/** The holdout is the one explained over. */
export interface RunExplainOptions extends HoldoutRun {
  /** Kernel SHAP coalitions per row (default: explain.samples). */
  samples?: number;
  /** Background rows the attributions are measured against (default: explain.backgroundRows). */
  backgroundRows?: number;
  /** Holdout rows attributed (default: explain.rows). */
  rows?: number;
  /** Shuffles per feature for permutation importance (default: explain.repeats). */
  repeats?: number;
  /** The metric permutation importance watches (default: explain.metric). */
  metric?: string;
  onProgress?: (line: string) => void;
}

/** explain's settings: the config's, with each one the options give in its place. */
function explainSettings(options: RunExplainOptions): ExplainSettings {
  const { explain } = options.config;
  return {
    ...explain,
    samples: options.samples ?? explain.samples,
    backgroundRows: options.backgroundRows ?? explain.backgroundRows,
    rows: options.rows ?? explain.rows,
    repeats: options.repeats ?? explain.repeats,
    metric: options.metric ?? explain.metric,
  };
}

/** A text model from an export folder: occlusion by token, through its own tokenizer. */
async function explainTexts(options: {
  cwd: string;
  config: Config;
  target: OpenedTarget;
  processing: ProcessingPlan;
  tokenizer: TextTokenizer;
  holdoutFile: string;
  settings: ExplainSettings;
  onProgress?: (line: string) => void;
}): Promise<TokenExplanation> {
  const { config, target, processing, tokenizer, holdoutFile } = options;
  const holdout = await openHoldout({
    cwd: options.cwd,
    holdout: holdoutFile,
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
    holdout: { ...holdout, file: holdoutFile },
    test: config.test,
    settings: options.settings,
    classNames: processing.labels?.names,
    onProgress: options.onProgress,
  });
}

/** `mlops explain`: the model where it runs (in-process, unless the target says otherwise), over the holdout. */
export async function runExplain(options: RunExplainOptions): Promise<GlobalExplanation | GlobalOcclusion | TokenExplanation> {
  const { config, holdoutFile } = options;
  const settings = explainSettings(options);
  const target = await openTarget({
    target: options.target,
    cwd: options.cwd,
    projectDir: options.projectDir,
    config,
    env: options.env,
    purpose: 'explain',
  });
  try {
    const processing = await processingFor(target.modelPath, target.predictor, config.model);
    const tokenizer = processing?.text ? createPreprocessor(processing)?.tokenizer : undefined;
    if (tokenizer) return await explainTexts({ ...options, target, processing: processing!, tokenizer, settings });
    // What cannot be explained is refused before the holdout is read.
    const image = imageInput(target.predictor);
    if (!image) tabularInput(target.predictor);
    const holdout = await openHoldout({
      cwd: options.cwd,
      holdout: holdoutFile,
      labels: options.labelsFile,
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
        holdout: { ...holdout, file: holdoutFile },
        test: config.test,
        settings: { ...settings, patch: config.explain.patch },
        onProgress: options.onProgress,
        picture,
      });
    return await explainGlobally({
      predictor: target.predictor,
      holdout: { ...holdout, file: holdoutFile },
      test: config.test,
      settings,
      onProgress: options.onProgress,
    });
  } finally {
    await target.close();
  }
}
