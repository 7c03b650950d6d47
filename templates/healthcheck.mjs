// HEALTHCHECK for mlops images: node itself asks the readiness route, so the
// image needs no curl or wget.
// Vertex AI's AIP_HTTP_PORT moves the server (src/server/options.ts); SageMaker ignores HEALTHCHECK.
const port = process.env.AIP_HTTP_PORT || process.env.PORT || '8080';
const timer = setTimeout(() => process.exit(1), 2500);
fetch(`http://127.0.0.1:${port}/v2/health/ready`).then(
  (res) => process.exit(res.ok ? 0 : 1),
  () => process.exit(1),
);
timer.unref();
