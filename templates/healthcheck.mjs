// HEALTHCHECK for mlops images: node itself asks the readiness route, so the
// image needs no curl or wget.
// Vertex AI's AIP_HTTP_PORT moves the server (src/server/options.ts); SageMaker ignores HEALTHCHECK.
// With TLS on (MLOPS_TLS_CERT) the route is asked over HTTPS on loopback, without checking the
// certificate: this is the container asking itself, and the readiness route needs no client certificate.
import http from 'node:http';
import https from 'node:https';

const port = process.env.AIP_HTTP_PORT || process.env.PORT || '8080';
const tls = Boolean(process.env.MLOPS_TLS_CERT);
const timer = setTimeout(() => process.exit(1), 2500);
timer.unref();
const req = (tls ? https : http).get(`${tls ? 'https' : 'http'}://127.0.0.1:${port}/v2/health/ready`, { rejectUnauthorized: false }, (res) => process.exit(res.statusCode === 200 ? 0 : 1));
req.on('error', () => process.exit(1));
