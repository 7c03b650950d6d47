/** SageMaker's container contract: GET /ping, POST /invocations. */
import type http from 'node:http';
import { parse as parseCsv } from 'csv-parse/sync';
import { BadRequest } from '../../protocol/request.js';
import { HEADER_LENGTH } from '../../protocol/rest.js';
import { readBody } from '../body.js';
import { RAW_CONTENT_TYPE } from '../processing.js';
import { parseJsonBody, queryParameters, type RestContext, type RestInference } from '../rest-inference.js';
import { SAGEMAKER_BINARY, sendJson, type Handler, type Route } from '../rest-pipeline.js';

/** What curl, fetch and `aws sagemaker-runtime invoke-endpoint` send when told nothing: read as JSON. */
const GENERIC_TYPES = new Set(['text/plain', 'application/octet-stream', 'application/x-www-form-urlencoded']);

export function sagemakerRoutes(ctx: RestContext, inference: RestInference, ready: Handler): Route[] {
  const { repository, bodyLimits } = ctx;
  const { rawBody, runRaw, runInfer, readInferBody, runInstances } = inference;

  /**
   * SageMaker's inference route. The content type picks the format: JSON instances or an OIP v2 body,
   * OIP binary (SageMaker passes no custom headers, so its JSON length rides in the content type, as
   * SageMaker's Triton containers take it), or CSV rows without a header.
   */
  const invocations: Handler = async (req, res) => {
    // SageMaker's contract names no model: the first one answers (TargetModel, multi-model endpoints, is not served).
    repository.check(undefined);
    // The version is picked once the body has arrived: a load may have swapped it meanwhile.
    const served = () => repository.route(undefined);
    const [mime, ...parameters] = (req.headers['content-type'] || 'application/json').split(';').map((p) => p.trim().toLowerCase());
    if (mime === SAGEMAKER_BINARY) {
      const size = parameters.find((p) => p.startsWith('json-header-size='))?.slice('json-header-size='.length);
      if (size === undefined)
        throw new BadRequest(
          `content type ${SAGEMAKER_BINARY} needs its length parameter: ${SAGEMAKER_BINARY};json-header-size=<bytes of JSON before the binary data>`,
        );
      const { body, header } = await readInferBody(req, size);
      return runInfer(served(), true, req, res, body, header, 'sagemaker');
    }
    if (req.headers[HEADER_LENGTH] !== undefined) {
      const { body, header } = await readInferBody(req, req.headers[HEADER_LENGTH]);
      return runInfer(served(), true, req, res, body, header, 'header');
    }
    // An image (image/*, SageMaker's application/x-image) or a text (text/plain) to a model that takes one.
    const raw = RAW_CONTENT_TYPE.test(mime) ? await rawBody(served(), req) : undefined;
    if (raw && 'raw' in raw) return runRaw(served(), req, res, raw.raw, 'pipeline', { parameters: queryParameters(req) });
    if (raw) {
      if ('instances' in (raw.parsed as object)) return runInstances(served(), req, res, raw.parsed, '/invocations');
      return runInfer(served(), true, req, res, raw.body, undefined, 'header', raw.parsed);
    }
    if (mime === 'text/csv') {
      const instances = csvRows(await readBody(req, bodyLimits));
      return runInstances(served(), req, asLines(req, res), { instances }, '/invocations (text/csv)');
    }
    if (JSON_LINES.has(mime)) {
      const instances = jsonLines(await readBody(req, bodyLimits));
      return runInstances(served(), req, asLines(req, res), { instances }, '/invocations (application/jsonlines)');
    }
    if (mime === 'application/json' || mime.endsWith('+json') || GENERIC_TYPES.has(mime)) {
      const body = await readBody(req, bodyLimits);
      const parsed = parseJsonBody(body);
      if (typeof parsed === 'object' && parsed !== null && 'instances' in parsed) return runInstances(served(), req, res, parsed, '/invocations');
      return runInfer(served(), true, req, res, body, undefined, 'header', parsed);
    }
    throw new BadRequest(
      `/invocations does not take content type '${mime}': send application/json ({"instances": [...]} or an Open Inference Protocol v2 body), text/csv, application/jsonlines, or ${SAGEMAKER_BINARY};json-header-size=N`,
      415,
    );
  };

  /**
   * What Batch Transform asks the container before its first mini-batch, for the settings a job leaves
   * out: as many requests at once as the server runs side by side, mini-batches up to its body limit.
   */
  const executionParameters: Handler = async (_req, res) => {
    let workers = 0;
    try {
      workers = repository.route(undefined).engine.workers;
    } catch {
      // No model yet: the answer only sizes the requests, so the smallest concurrency will do.
    }
    sendJson(res, 200, {
      MaxConcurrentTransforms: Math.max(2, workers + 1),
      BatchStrategy: 'MULTI_RECORD',
      MaxPayloadInMB: Math.min(100, Math.max(1, Math.floor(bodyLimits.maxBodyBytes / MIB))),
    });
  };

  return [
    { label: '/ping', pattern: /^\/ping$/, methods: { GET: ready }, open: true },
    { label: '/execution-parameters', pattern: /^\/execution-parameters$/, methods: { GET: executionParameters }, open: true },
    { label: '/invocations', pattern: /^\/invocations$/, firstModel: true, methods: { POST: invocations } },
  ];
}

const MIB = 1024 * 1024;
/** JSON Lines, as Batch Transform names it (and as others do). */
const JSON_LINES = new Set(['application/jsonlines', 'application/x-jsonlines', 'application/jsonl', 'application/x-ndjson']);

/** One instance per line of a JSON Lines body, blank lines skipped. */
function jsonLines(body: Buffer): unknown[] {
  const instances: unknown[] = [];
  body
    .toString('utf8')
    .split('\n')
    .forEach((line, i) => {
      if (line.trim() === '') return;
      try {
        instances.push(JSON.parse(line));
      } catch (error) {
        throw new BadRequest(`application/jsonlines: line ${i + 1} is not JSON (${(error as Error).message})`);
      }
    });
  if (instances.length === 0) throw new BadRequest('application/jsonlines: the body has no lines');
  return instances;
}

/**
 * Lines out for lines in, when the request asks for them (Accept: text/csv or application/jsonlines, as a
 * Batch Transform job with AssembleWith Line sets it): each prediction on its own line, in the order of the
 * input lines, so SageMaker can join the mini-batches' answers into one file beside the input. Without such
 * an Accept the answer is the usual {"predictions": [...]}.
 */
function asLines(req: http.IncomingMessage, res: http.ServerResponse): http.ServerResponse {
  const accept = (req.headers.accept ?? '').split(',').map((a) => a.split(';')[0].trim().toLowerCase());
  const type = accept.find((a) => a === 'text/csv' || JSON_LINES.has(a));
  if (!type) return res;
  const writeHead = res.writeHead.bind(res);
  let status = 200;
  // runInstances answers with writeHead and one end(JSON): the JSON becomes lines before it is sent.
  res.writeHead = (code: number) => ((status = code), res);
  const end = res.end.bind(res);
  res.end = ((chunk?: string | Buffer) => {
    if (status !== 200 || chunk === undefined) {
      writeHead(status, { 'content-type': 'application/json' });
      return end(chunk);
    }
    const { predictions } = JSON.parse(chunk.toString()) as { predictions: unknown[] };
    const text = predictions.map((p) => (type === 'text/csv' ? csvLine(p) : JSON.stringify(p))).join('\n') + '\n';
    writeHead(200, { 'content-type': type, 'content-length': Buffer.byteLength(text) });
    return end(text);
  }) as typeof res.end;
  return res;
}

/** A prediction as one CSV line: its values flattened in order (several outputs one after another, as the model lists them). */
function csvLine(prediction: unknown): string {
  const values: unknown[] = [];
  const walk = (value: unknown) => {
    if (Array.isArray(value)) value.forEach(walk);
    else if (typeof value === 'object' && value !== null) Object.values(value).forEach(walk);
    else values.push(value);
  };
  walk(prediction);
  return values.map((v) => (typeof v === 'string' && /[",\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : String(v))).join(',');
}

/**
 * Numeric CSV rows without a header, as SageMaker's built-in algorithms send them. A body without
 * quotes is split directly: csv-parse costs about 110 µs a call even for one row (measured in
 * `npm run bench`, dataplane contracts part), three times the whole /invocations JSON path.
 */
function csvRows(body: Buffer): number[][] {
  const text = body.toString('utf8');
  let records: string[][];
  try {
    records = text.includes('"')
      ? parseCsv(text, { skip_empty_lines: true, trim: true })
      : text
          .split('\n')
          .map((line) => line.trim())
          .filter((line) => line !== '')
          .map((line) => line.split(','));
  } catch (error) {
    throw new BadRequest(`text/csv: ${(error as Error).message}`);
  }
  if (records.length === 0) throw new BadRequest('text/csv: the body has no rows');
  return records.map((record, r) =>
    record.map((cell, c) => {
      // Decimal numbers only (an exponent allowed, as numpy writes them): Number() would also read "0x10" as 16.
      const value = DECIMAL.test(cell) ? Number(cell) : NaN;
      if (!Number.isFinite(value))
        throw new BadRequest(`text/csv: row ${r + 1}, column ${c + 1} is '${cell.trim()}', not a number (send rows of numbers, no header line)`);
      return value;
    }),
  );
}

const DECIMAL = /^\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*$/;
