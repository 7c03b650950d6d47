/**
 * Image labels that describe a model folder, shared by the builder that writes them and the SBOM
 * that reads them: a constant two layers share lives below both.
 */

/** The model file's sha256: what an image, a version, a deployed container or pod serves (images, Kubernetes annotations, container labels). */
export const MODEL_SHA256_LABEL = 'mlops.model.sha256';
/** JSON [{name, sha256}]: the export folder's processing files the server reads beside the model. */
export const MODEL_FILES_LABEL = 'mlops.model.files';
/** "image" or "text": what the model takes raw. */
export const MODEL_TAKES_LABEL = 'mlops.model.takes';
/** "sharp X, libvips Y": the image library the image carries, only where a model takes images. */
export const IMAGING_LABEL = 'mlops.imaging';
