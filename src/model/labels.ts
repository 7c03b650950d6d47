/**
 * The image labels mlops writes and reads: the builder and tag write them; the SBOM, deploys and the
 * image mode of test, bench and explain read them. A constant several layers share lives below them all.
 */

/** The model's name (the first model's, in an image of several). */
export const MODEL_NAME_LABEL = 'mlops.model.name';
/** JSON [{name, version, sha256, weight, shadow}]: every model of an image of several. */
export const MODELS_LABEL = 'mlops.models';
/** JSON: the model's inputs and outputs with their symbolic dimensions, which its server reports only as -1. */
export const MODEL_INPUTS_LABEL = 'mlops.model.inputs';
export const MODEL_OUTPUTS_LABEL = 'mlops.model.outputs';
/** The release version `mlops tag` gave the image (and a local deploy's container). */
export const RELEASE_VERSION_LABEL = 'mlops.release.version';

/** The model file's sha256: what an image, a version, a deployed container or pod serves (images, Kubernetes annotations, container labels). */
export const MODEL_SHA256_LABEL = 'mlops.model.sha256';
/** JSON [{name, sha256}]: the export folder's processing files the server reads beside the model. */
export const MODEL_FILES_LABEL = 'mlops.model.files';
/** "image" or "text": what the model takes raw. */
export const MODEL_TAKES_LABEL = 'mlops.model.takes';
/** "sharp X, libvips Y": the image library the image carries, only where a model takes images. */
export const IMAGING_LABEL = 'mlops.imaging';
