import path from 'node:path';
import { inspectModel, type TensorSpec } from '../model/inspect.js';
import { renderTable } from '../ui/reporter.js';
import { ExitCode } from '../errors.js';
import { describePlan, loadProcessing, servableSignature } from '../processing/plan.js';
import type { CommandContext } from './context.js';

/** inspect takes no options: only the model, as its argument. */
export type InspectFlags = Record<string, never>;

export async function run(_flags: InspectFlags, ctx: CommandContext, modelArg: string | undefined): Promise<number> {
  const modelPath = modelArg ?? (await configuredModelPath(ctx));
  const info = await inspectModel(modelPath, { cwd: ctx.cwd });
  const overrides = modelArg === undefined ? (await ctx.config()).config.model : {};
  const processing = await loadProcessing(info.path, servableSignature(info), overrides);
  const tensor = ({ name, datatype, shape }: TensorSpec) => ({ name, datatype, shape });
  const result = {
    path: info.path,
    sha256: info.sha256,
    sizeBytes: info.sizeBytes,
    opset: info.opset,
    irVersion: info.irVersion,
    opsets: info.opsets,
    producer: info.producer,
    inputs: info.inputs.map(tensor),
    outputs: info.outputs.map(tensor),
    metadata: info.metadata,
    externalData: info.externalData,
    processing: processing ? { files: processing.files.map((f) => ({ name: f.name, sha256: f.sha256 })), receives: describePlan(processing) } : null,
  };
  ctx.reporter.result(result, (r, s) => {
    const shape = (t: { shape: number[] | null }) => (t.shape ? `[${t.shape.join(', ')}]` : 'unknown');
    const rows = (ts: typeof r.inputs) => ts.map((t) => [t.name, t.datatype, shape(t)]);
    return [
      `${s.bold('model')}     ${path.relative(ctx.cwd, r.path) || r.path}`,
      `${s.bold('sha256')}    ${r.sha256}`,
      `${s.bold('size')}      ${r.sizeBytes} bytes`,
      `${s.bold('opset')}     ${r.opset ?? 'none'} (IR version ${r.irVersion})`,
      `${s.bold('producer')}  ${[r.producer.name, r.producer.version].filter(Boolean).join(' ') || 'unknown'}`,
      ...(r.externalData.length > 0 ? [`${s.bold('weights')}   ${r.externalData.join(', ')} (external data)`] : []),
      '',
      s.bold('inputs'),
      renderTable(['name', 'datatype', 'shape'], rows(r.inputs)),
      '',
      s.bold('outputs'),
      renderTable(['name', 'datatype', 'shape'], rows(r.outputs)),
      ...(r.processing
        ? ['', s.bold('model folder') + `  ${r.processing.files.map((f) => f.name).join(', ')}`, ...r.processing.receives.map((line) => `  ${line}`)]
        : []),
    ].join('\n');
  });
  return ExitCode.ok;
}

/** model.path from config, as a path relative to the working folder so errors show it as the user wrote it. */
export async function configuredModelPath(ctx: CommandContext): Promise<string> {
  const { config, baseDir } = await ctx.config();
  return path.relative(ctx.cwd, path.resolve(baseDir, config.model.path)) || config.model.path;
}
