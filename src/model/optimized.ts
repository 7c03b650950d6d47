/** What `mlops optimize` records in an optimized model's metadata_props, and `mlops build` turns into labels. */
export const OPTIMIZE_METADATA = {
  sourceSha256: 'mlops.optimize.source_sha256',
  method: 'mlops.optimize.method',
  level: 'mlops.optimize.level',
  calibrationRows: 'mlops.optimize.calibration_rows',
  excluded: 'mlops.optimize.excluded',
} as const;

/** The labels of an image whose model `mlops optimize` made: what was done, and from which source model. */
export function optimizedModelLabels(metadata: Record<string, string>): Record<string, string> {
  const sourceSha = metadata[OPTIMIZE_METADATA.sourceSha256];
  if (!sourceSha) return {};
  return { 'mlops.model.optimized': metadata[OPTIMIZE_METADATA.method] ?? 'yes', 'mlops.model.source_sha256': sourceSha };
}
