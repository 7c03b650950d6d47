/**
 * `mlops monitor`'s flags, and what each of its three runs takes from them: the drift check
 * (runMonitor), live quality (--labels, runLabelled) and the generated files (--emit). Every
 * flag is checked here, in the order the runs always reported them.
 */
import type { SelectedModel } from '../config/models.js';
import { inputError } from '../errors.js';
import { parseGateFlag } from '../metrics/gates.js';
import { driftGates } from '../monitor/compare.js';
import {
  EMITTABLE,
  readReference,
  type Emit,
  type EmitOptions,
  type LiveTraffic,
  type LoadedReference,
  type RunLabelledOptions,
  type RunMonitorOptions,
} from '../monitor/monitor.js';
import { parseTime } from '../monitor/quality.js';
import { parseSince } from '../monitor/sources.js';
import type { ClientSecurityFiles } from '../protocol/client-security.js';
import type { CommandContext } from './context.js';
import { securityFiles } from './target-flags.js';

export interface MonitorFlags extends ClientSecurityFiles {
  target?: string;
  url: string[];
  prometheus?: string;
  since?: string;
  /** Counts since each server started, instead of its sliding window. */
  all?: boolean;
  reference?: string;
  gate: string[];
  strict?: boolean;
  /** Generate a file from the reference profile instead of judging traffic. */
  emit?: string;
  /** Live quality: the truth, joined with the inference log. */
  labels?: string;
  log: string[];
  until?: string;
  baseline?: string;
  /** The model to judge on a server that serves several: wins over model.name. */
  modelName?: string;
  markdown?: string;
  html?: string;
  output?: string;
}

/** Where one model is judged: the command's context and the model, as selected. */
export interface MonitorScope {
  ctx: CommandContext;
  projectDir: string;
  one: SelectedModel;
}

const common = ({ ctx, projectDir, one }: MonitorScope) => ({
  cwd: ctx.cwd,
  projectDir,
  config: one.config,
  env: ctx.env,
  log: (line: string) => ctx.reporter.info(line),
});

/** --reference, else the last build's profile (this model's, of several). */
const reference = (flags: MonitorFlags, { ctx, projectDir, one }: MonitorScope): Promise<LoadedReference> =>
  readReference({ cwd: ctx.cwd, projectDir, file: flags.reference, modelOfSeveral: one.entry ? one.name : undefined });

/** One of --target, --url (repeatable) and --prometheus, with the flags that go with it. */
async function liveTraffic(flags: MonitorFlags, scope: MonitorScope): Promise<LiveTraffic> {
  if (flags.until !== undefined || flags.baseline !== undefined || flags.log.length > 0)
    throw inputError('--until, --baseline and --log go with --labels', 'pass --labels <file> to judge live quality');
  const chosen = [flags.target !== undefined, flags.url.length > 0, flags.prometheus !== undefined].filter(Boolean).length;
  if (chosen !== 1)
    throw inputError(
      chosen === 0 ? 'no live traffic to judge' : '--target, --url and --prometheus exclude each other',
      'pass one of --target <name>, --url <base> (repeatable) or --prometheus <url>',
    );
  if (flags.since !== undefined && !flags.prometheus)
    throw inputError('--since goes with --prometheus', 'servers keep their last monitor.windowRows rows; --all takes everything since they started');
  if (flags.all && flags.prometheus) throw inputError('--all goes with --target or --url', 'with --prometheus, --since sets the range');
  if (flags.prometheus !== undefined) {
    const read = await reference(flags, scope);
    return { kind: 'prometheus', url: flags.prometheus, reference: read, range: parseSince(flags.since ?? '1h') };
  }
  if (flags.reference) throw inputError('--reference goes with --prometheus', "a server's profile document carries its own reference");
  const servers = { window: !flags.all, credentials: securityFiles(flags) };
  if (flags.url.length === 0) return { kind: 'target', target: flags.target!, ...servers };
  for (const url of flags.url)
    if (!/^https?:\/\//.test(url)) throw inputError(`--url ${url}: expected http:// or https://`, 'pass the server base, e.g. --url http://127.0.0.1:8080');
  return { kind: 'url', urls: flags.url, ...servers };
}

/** What the flags ask of one model's drift check: its gates (checked before anything is fetched: a typo fails at once), then where live counts come from. */
export async function monitorOptions(flags: MonitorFlags, scope: MonitorScope): Promise<RunMonitorOptions> {
  const { one } = scope;
  const gates = driftGates({ monitor: one.config.monitor, gates: flags.gate.map(parseGateFlag) });
  const traffic = await liveTraffic(flags, scope);
  return { ...common(scope), traffic, gates, strict: Boolean(flags.strict), modelName: one.entry ? one.name : flags.modelName };
}

/** What the flags ask of --emit: a kind it knows, no flag of live traffic, the reference profile, and for alert rules their range. */
export async function emitOptions(flags: MonitorFlags, scope: MonitorScope): Promise<EmitOptions> {
  if (!(EMITTABLE as readonly string[]).includes(flags.emit!))
    throw inputError(`--emit ${flags.emit}: expected ${EMITTABLE.join(' or ')}`, 'see `mlops monitor --help`');
  if (flags.target || flags.url.length > 0 || flags.prometheus || flags.all || flags.strict || flags.gate.length > 0) {
    throw inputError('--emit reads no live traffic: drop --target, --url, --prometheus, --all, --strict and --gate');
  }
  const read = await reference(flags, scope);
  const emit: Emit = flags.emit === 'grafana-dashboard' ? { kind: 'grafana-dashboard' } : { kind: 'prometheus-rules', window: parseSince(flags.since ?? '1h') };
  return { config: scope.one.config, reference: read, emit };
}

/** What the flags ask of live quality (--labels): where the log is read, the time range, then the gates; each checked in that order. */
export function labelledOptions(flags: MonitorFlags, scope: MonitorScope): RunLabelledOptions {
  const conflicting = [
    flags.url.length > 0 && '--url',
    flags.prometheus !== undefined && '--prometheus',
    flags.all && '--all',
    flags.reference !== undefined && '--reference',
  ].filter(Boolean);
  if (conflicting.length > 0)
    throw inputError(
      `--labels reads the inference log, not live counts: drop ${conflicting.join(', ')}`,
      'give the log with --log <file>, or --target to read it from the deployed replicas',
    );
  if ((flags.target !== undefined) === flags.log.length > 0)
    throw inputError(
      flags.target ? '--target and --log exclude each other' : 'no inference log to join the labels with',
      'pass --log <file> (repeatable) or --target <name>',
    );
  const now = Date.now();
  const range = {
    since: flags.since !== undefined ? parseTime(flags.since, '--since', now) : undefined,
    until: flags.until !== undefined ? parseTime(flags.until, '--until', now) : undefined,
  };
  if (range.since !== undefined && range.until !== undefined && range.since >= range.until)
    throw inputError(`--since ${flags.since} is not before --until ${flags.until}`, 'the range runs from --since (earlier) to --until (later)');
  return {
    ...common(scope),
    labelsFile: flags.labels!,
    logs: flags.target !== undefined ? { kind: 'target', target: flags.target } : { kind: 'files', files: flags.log },
    range,
    gates: flags.gate.map(parseGateFlag),
    baselineFile: flags.baseline,
    strict: Boolean(flags.strict),
    ...(scope.one.entry ? { modelOfSeveral: scope.one.name } : {}),
  };
}
