/** The config's types, read off the schema (config/schema.ts), where each field is written once. */
import type { z } from 'zod';
import type { modelSection, modelVersionSchema, ParsedConfig, targetSchema } from './schema.js';

export type TargetConfig = z.output<typeof targetSchema>;
type TargetType = TargetConfig['type'];
type Target<K extends TargetType> = Extract<TargetConfig, { type: K }>;
export type LocalTarget = Target<'local'>;
export type KubernetesTarget = Target<'kubernetes'>;
export type CloudRunTarget = Target<'cloudrun'>;
export type KServeTarget = Target<'kserve'>;
export type SageMakerTarget = Target<'sagemaker'>;
export type VertexTarget = Target<'vertex'>;
export type LambdaTarget = Target<'lambda'>;
export type AzureMLTarget = Target<'azureml'>;
export type ContainerAppTarget = Target<'containerapp'>;

type ModelVersion = z.output<typeof modelVersionSchema>;

/**
 * One model of several (config `models`) once normalize has filled in what it takes from the top-level
 * sections: its first serving version's path and version, and one version at least.
 */
export type ModelEntry = Pick<ParsedConfig['models'][number], 'name'> &
  Pick<Config['model'], 'path' | 'version' | 'shapes' | 'inputData' | 'preprocess' | 'postprocess'> &
  Pick<Config['server'], 'workers' | 'batching'> &
  Pick<Config, 'test' | 'monitor'> & { versions: ModelVersion[] };

/** A config once defaults are applied and normalised: `model` filled in, `models` as entries, no `$schema`. */
export type Config = Omit<ParsedConfig, '$schema' | 'model' | 'models'> & { model: z.output<typeof modelSection>; models: ModelEntry[] };

/** The keys of an object a schema fills in when its input leaves them out. */
type DefaultedKeys<In, Out> = {
  [K in keyof Out & keyof In]-?: undefined extends In[K] ? (undefined extends Out[K] ? never : K) : never;
}[keyof Out & keyof In];
/** A target type's defaults: every field but the required ones and the optional ones with no default. */
export type TargetDefaults = {
  [K in TargetType]: Pick<Target<K>, 'type' | DefaultedKeys<Extract<z.input<typeof targetSchema>, { type: K }>, Target<K>>>;
};
export type ModelEntryDefaults = Pick<ModelVersion, 'version' | 'weight' | 'shadow'>;
