/** GET /metrics: Prometheus' exposition of the server's metrics. */
import type { ServerMetrics } from '../metrics.js';
import type { Route } from '../rest-pipeline.js';

/** `open`: answered without a token (unless server.auth.metrics). */
export function metricsRoutes(metrics: ServerMetrics, open: boolean): Route[] {
  return [
    {
      label: '/metrics',
      pattern: /^\/metrics$/,
      open,
      methods: {
        GET: async (_q, res) => {
          const text = await metrics.registry.metrics();
          res.writeHead(200, { 'content-type': metrics.registry.contentType, 'content-length': Buffer.byteLength(text) });
          res.end(text);
        },
      },
    },
  ];
}
