import { Command, CommanderError, Option, type OptionValues } from 'commander';
import { createContext, type CommandContext, type GlobalOptions } from './commands/context.js';
import { ExitCode, inputError, signalExitCode } from './errors.js';
import { cleanupOnInterrupt, interruptedBy } from './process/interrupt.js';
import { isInteractive, useColor } from './ui/environment.js';
import { Reporter, type OutputStream } from './ui/reporter.js';
import { VERSION } from './version.js';

export interface MainIO {
  stdout?: OutputStream;
  stderr?: OutputStream;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

const collect = (value: string, previous: string[]) => [...previous, value];

/** What mlops' clients present to a server that asks: a token, a CA to trust, a client certificate (test, bench, monitor). */
function withClientSecurity(command: Command): Command {
  return command
    .option('--token-file <file>', 'send the first token in this file as Authorization: Bearer (default: env MLOPS_TOKEN)')
    .option('--cacert <file>', 'trust this PEM CA for https:// and grpcs:// (default: env MLOPS_CACERT)')
    .option('--cert <file>', 'client certificate for mutual TLS (default: env MLOPS_CLIENT_CERT)')
    .option('--key <file>', 'its private key (default: env MLOPS_CLIENT_KEY)');
}

/**
 * What each src/commands/<verb>.ts exports: its handler, given the flags commander parsed (typed as
 * that file declares them) and the command's one argument, a model or a version, when it takes one.
 */
interface CommandModule<Flags> {
  run: (flags: Flags, ctx: CommandContext, argument: string | undefined) => Promise<number>;
}

/** Makes commander's action for a command from its lazily imported module; Flags is read off the module's `run`. */
type RunAction = <Flags extends OptionValues>(load: () => Promise<CommandModule<Flags>>) => (this: Command) => Promise<void>;

/**
 * Every command, in one list. Handlers are imported only when their command
 * runs, so `mlops --help` never loads ONNX Runtime or the Docker client.
 */
// eslint-disable-next-line max-lines-per-function -- a data table: every command and its flags, in one list
function registerCommands(program: Command, runAction: RunAction): void {
  program
    .command('inspect')
    .description("show an ONNX model's sha256, opset, producer and input/output signature")
    .argument('[model]', 'the .onnx file (default: model.path from config)')
    .action(runAction(() => import('./commands/inspect.js')));

  program
    .command('init')
    .description("write a starter mlops.config.json from a model's signature")
    .requiredOption('--model <file>', 'the .onnx model, or the export folder, the config is for')
    .option('--force', 'overwrite an existing config file')
    .action(runAction(() => import('./commands/init.js')));

  program
    .command('build [model]')
    .description('package the model and the inference server into a container image, with or without a Docker daemon')
    .option('--model <file>', 'the .onnx model, or the folder a Hugging Face export wrote (default: model.path from config)')
    .option('--tag <tag>', 'another tag, "v1" or "registry/name:v1" (repeatable)', collect, [])
    .option('--base <image>', 'base image with node 20+: a reference, oci:<dir>[:<tag>] or docker-archive:<file.tar> (default: image.base, node:20-slim)')
    .option('--platform <platform>', 'linux/amd64, linux/arm64, or both comma-separated (default: image.platform)')
    .option('--builder <builder>', 'docker, oci (no daemon) or auto (default: image.builder, auto: docker when an engine answers)')
    .option(
      '--output <dest>',
      'with the oci builder: registry, oci:<dir> or docker:<file.tar> (repeatable; default: the registry image.repository names, and the engine when one answers)',
      collect,
      [],
    )
    .option('--check <digest>', 'build again and exit 1 unless the image digest is this one (a reproducibility check; oci builder)')
    .option('--no-cache', "rebuild every layer, ignoring the engine's cache (docker) or the compressed-layer cache (oci)")
    .action(runAction(() => import('./commands/build.js')));

  withClientSecurity(
    program
      .command('test')
      .description('score the packaged model on a holdout set and apply quality gates (exit 1 when one fails)')
      .option(
        '--holdout <file>',
        'holdout: .csv with a header, .jsonl, .npy, or for an image or text model a folder of images per class or a table with an image or text column (default: test.holdout)',
      )
      .option('--labels <file>', 'labels .npy, with an .npy holdout (default: test.labelsFile)')
      .option('--image <ref>', 'image to test (default: the last `mlops build`)')
      .option('--url <base>', 'test a server that is already running')
      .option('--local', 'run the model in-process with ONNX Runtime')
      .option('--model <file>', 'model file or export folder for --local (default: model.path)')
      .option('--model-name <name>', 'the model to use on a server that serves several (default: model.name)')
      .option('--protocol <name>', 'rest-json, rest-binary or grpc (default: rest-binary when the server offers it)')
      .option('--gate <gate>', "a gate such as 'accuracy>=0.95' (repeatable; adds to test.gates)", collect, [])
      .option('--baseline <report>', 'an earlier `mlops test --json` report; test.maxDrop limits how far each metric may fall')
      .option('--junit <file>', 'write JUnit XML, one testcase per gate')
      .option('--markdown <file>', 'write a Markdown summary (also appended to $GITHUB_STEP_SUMMARY)'),
  ).action(runAction(() => import('./commands/test.js')));

  withClientSecurity(
    program
      .command('bench')
      .description('measure latency and throughput, and apply latency gates (exit 1 when one fails)')
      .option('--image <ref>', 'image to benchmark (default: the last `mlops build`)')
      .option('--url <base>', 'benchmark a server that is already running')
      .option('--local', 'benchmark in-process ONNX Runtime (the floor a server is compared with)')
      .option('--model <file>', 'model file or export folder for --local (default: model.path)')
      .option('--model-name <name>', 'the model to use on a server that serves several (default: model.name)')
      .option('--protocol <name>', 'rest-json, rest-binary or grpc (default: rest-binary when the server offers it)')
      .option('--concurrency <list>', 'closed-loop runs at these concurrencies, e.g. 1,8,32 (default: bench.concurrency)')
      .option('--rate <list>', 'open-loop runs at these arrival rates in requests a second, e.g. 200,500')
      .option('--batch <list>', 'rows per request, e.g. 1,8,32 (default: bench.batch)')
      .option('--duration <time>', 'each run lasts this long: 10s, 500ms, 2m (default: bench.durationSeconds)')
      .option('--requests <n>', 'each run sends this many requests instead')
      .option('--warmup <time>', 'load before each run that is not counted (default: bench.warmupSeconds)')
      .option('--workers <n>', 'load generator threads (default: bench.workers)')
      .option('--holdout <file>', 'send rows of this holdout instead of random inputs')
      .option('--labels <file>', 'labels .npy, with an .npy holdout')
      .option('--shape <name:dims>', "an input's full shape, e.g. input:1,512, for its dynamic dimensions (repeatable; over model.shapes)", collect, [])
      .option('--input-data <mode>', "what generated requests hold: random, zero, or a JSON file in perf_analyzer's input format (default: model.inputData)")
      .option(
        '--gate <gate>',
        "a gate such as 'p95_ms<=20' (repeatable; adds to bench.gates; without an error_rate gate, any failed request fails)",
        collect,
        [],
      )
      .option('--baseline <report>', 'an earlier `mlops bench --json` report; fail on a regression beyond bench.regression.tolerance')
      .option('--markdown <file>', 'write a Markdown summary (also appended to $GITHUB_STEP_SUMMARY)')
      .option('--html <file>', 'write a self-contained page with a chart of latency against load'),
  ).action(runAction(() => import('./commands/bench.js')));

  program
    .command('tag')
    .description('give the last build (or --image) a semantic version, with its test and bench results as labels')
    .argument('[version]', 'MAJOR.MINOR.PATCH, e.g. 1.2.0')
    .option('--bump <part>', 'patch, minor or major: bump the highest existing version')
    .option('--image <ref>', 'image to tag (default: the last `mlops build`)')
    .option('--alias <name>', 'also point this alias (staging, production) at the version (repeatable)', collect, [])
    .option('--force', 'overwrite a version that exists for another model')
    .option('--yes', 'confirm moving an alias (needed in CI)')
    .option('--offline', 'check local tags only, not the registry')
    .action(runAction(() => import('./commands/tag.js')));

  program
    .command('push')
    .description('push a version (default: the last `mlops tag`) and its aliases to the registry, with its SBOM attached and, given a key, signed')
    .argument('[version]', 'the version to push')
    .option('--yes', 'confirm moving an alias in the registry (needed in CI)')
    .action(runAction(() => import('./commands/push.js')));

  program
    .command('optimize')
    .description(
      'optimize the model with ONNX Runtime and quantize it to INT8, then score and benchmark it beside the source and gate the result (exit 1 when a gate fails; the file is then not written)',
    )
    .option('--model <file>', 'the .onnx model (default: model.path from config)')
    .option('--output <file>', 'where to write the optimized model (default: optimize.output)')
    .option('--quantize <mode>', 'none, dynamic or static (default: optimize.quantize)')
    .option('--calibration <file>', 'rows for static quantization, in any holdout format (an image folder too) (default: monitor.reference, else test.holdout)')
    .option('--calibration-rows <n>', 'at most this many calibration rows (default 256)', (v) => Number(v))
    .option('--method <method>', 'minmax or percentile ranges (default minmax)')
    .option('--per-channel', 'one scale per Conv output channel (the default)')
    .option('--no-per-channel', 'one scale per Conv weight')
    .option('--exclude <name>', 'a node name or op type to leave in float (repeatable)', collect, [])
    .option('--level <level>', "ONNX Runtime's optimization level for the saved model: basic, extended or all (default extended)")
    .option('--holdout <file>', 'the holdout both models are scored on (default: test.holdout)')
    .option('--gate <gate>', "a gate such as 'accuracy_drop<=0.005', 'speedup>=1.2' or 'size_ratio<=0.35' (repeatable; adds to optimize.gates)", collect, [])
    .option('--keep', 'write the optimized model even when a gate fails')
    .option('--markdown <file>', 'write a Markdown summary (also appended to $GITHUB_STEP_SUMMARY)')
    .action(runAction(() => import('./commands/optimize.js')));

  program
    .command('batch')
    .argument('[version]', 'with --target: the pushed version whose image scores (default: as `mlops deploy` resolves it)')
    .description(
      'score a dataset with the model: files, folders, globs or s3://, gs://, az:// URIs in, a CSV, JSONL or Parquet file or folder out, on every core here or as a job on a target (exit 1 when more rows are rejected than batch.maxRejectRate allows)',
    )
    .option(
      '--input <path>',
      'a .csv, .jsonl, .parquet or .npy file, a folder or glob of them, a folder of images, or an object storage URI (default: batch.input)',
    )
    .option('--output <path>', 'a .csv, .jsonl or .parquet file, or a folder or URI ending in / for one part per shard (default: batch.output)')
    .option('--model <file>', 'model file or export folder (default: model.path)')
    .option(
      '--image <ref>',
      "score in this image's batch mode under the local Docker engine, with the model and runtime it serves (input and output folders mounted)",
    )
    .option('--format <format>', "csv, jsonl or parquet, for a folder output (default: the output's extension, else the input's)")
    .option('--id-column <name>', "the input column naming each row, copied to the output (default: batch.idColumn; without it: 'source' and 'row')")
    .option('--columns <names>', "the model's feature columns, comma-separated, in the model's order (default: every column but the id)")
    .option('--batch-size <n>', 'rows per model run (default: batch.batchSize)', (v) => Number(v))
    .option('--workers <n>', 'worker threads, each with one ONNX Runtime session (default: batch.workers; 0: one per core)', (v) => Number(v))
    .option('--limit <n>', 'score the first n rows only', (v) => Number(v))
    .option('--shard <i/n>', 'run shard i of n (0-based) and stop: for any scheduler; a run without it joins the parts once every shard is done')
    .option('--max-reject-rate <fraction>', 'the share of rows that may be rejected (default: batch.maxRejectRate)', (v) => Number(v))
    .option('--shards <n>', "with --target: the Job's shard count (default: the input's size in shards of batch.shardMegabytes)", (v) => Number(v))
    .option('--target <name>', "run the job on this target's platform: a Kubernetes Indexed Job, SageMaker Batch Transform or Vertex AI batch prediction")
    .option('--dry-run', 'with --target: print what would run, and run nothing')
    .option('--plan <dir>', "with --target: write the job's declarative form (the Job's YAML, the API request as JSON) to this folder, and run nothing")
    .action(runAction(() => import('./commands/batch.js')));

  withClientSecurity(
    program
      .command('explain')
      .description(
        "report which features the model relies on over the holdout: each feature's mean absolute Kernel SHAP attribution and its permutation importance",
      )
      .option(
        '--holdout <file>',
        'holdout: .csv with a header, .jsonl, .npy, or for an image or text model a folder of images per class or a table with an image or text column (default: test.holdout)',
      )
      .option('--labels <file>', 'labels .npy, with an .npy holdout (default: test.labelsFile)')
      .option('--local', 'run the model in-process with ONNX Runtime (the default)')
      .option('--image <ref>', 'run the model in this image instead')
      .option('--url <base>', 'run the model on a server that is already running instead')
      .option('--model <file>', 'model file or export folder for the in-process run (default: model.path)')
      .option('--model-name <name>', 'the model to use on a server that serves several (default: model.name)')
      .option('--protocol <name>', 'rest-json, rest-binary or grpc, with --image or --url')
      .option('--samples <n>', 'Kernel SHAP coalitions per row (default: explain.samples)', (v) => Number(v))
      .option('--background-rows <n>', 'background rows the attributions are measured against (default: explain.backgroundRows)', (v) => Number(v))
      .option('--rows <n>', 'holdout rows attributed (default: explain.rows)', (v) => Number(v))
      .option('--repeats <n>', 'shuffles per feature for permutation importance (default: explain.repeats)', (v) => Number(v))
      .option('--metric <name>', 'the metric permutation importance watches (default: explain.metric, else accuracy or r2)')
      .option('--markdown <file>', 'write a Markdown summary (also appended to $GITHUB_STEP_SUMMARY)')
      .option('--html <file>', 'write a self-contained HTML page: ranked bars and attribution against value for the top features'),
  ).action(runAction(() => import('./commands/explain.js')));

  program
    .command('keygen')
    .description('make an ECDSA P-256 key pair for signing versions: <dir>/mlops.key (mode 0600) and <dir>/mlops.pub')
    .requiredOption('--output <dir>', 'the folder to write them to (never over an existing key)')
    .action(runAction(() => import('./commands/keygen.js')));

  program
    .command('verify')
    .description("check a pushed version's signature and SBOM with only the public key and the registry (exit 1 naming what failed)")
    .argument('[version]', 'the version (default: the last `mlops tag`)')
    .option('--key <file>', 'the public key, PEM (default: deploy.verify.key)')
    .action(runAction(() => import('./commands/verify.js')));

  program
    .command('versions')
    .description("list the model's versions in the registry: digest, created, model, results, signature (verified with the key), aliases")
    .option('--repository <ref>', 'registry/repository to list (default: image.repository)')
    .option('--key <file>', "check each version's signature with this public key, as mlops verify does (default: deploy.verify.key)")
    .action(runAction(() => import('./commands/versions.js')));

  program
    .command('deploy')
    .description('deploy a version to a target, check it, and roll back by itself when it fails (exit 4)')
    .argument('[version]', 'the version (default for local targets: the last build)')
    .requiredOption('--target <name>', 'a target from config (targets.<name>)')
    .option('--dry-run', 'print the manifests and commands it would run; change nothing')
    .option('--output <dir>', 'kubernetes, kserve, sagemaker: write the manifests or API inputs here instead of deploying')
    .option('--lock-timeout <seconds>', "wait this long for another deploy's lock on the target (default 0: exit 3 at once, naming the holder)")
    .option('--force', 'deploy over a damaged history (set aside) or a target whose history is missing')
    .action(runAction(() => import('./commands/deploy.js')));

  program
    .command('rollback')
    .description('put the previous version (or --to <version>) back on a target')
    .requiredOption('--target <name>', 'a target from config')
    .option('--to <version>', 'the version to return to (default: the one before the current)')
    .option('--dry-run', 'print the commands it would run; change nothing')
    .option('--lock-timeout <seconds>', "wait this long for another deploy's lock on the target (default 0: exit 3 at once)")
    .option('--force', 'roll back over a damaged history (set aside)')
    .action(runAction(() => import('./commands/rollback.js')));

  program
    .command('status')
    .description('show what a target serves: version, health, uptime, URL')
    .requiredOption('--target <name>', 'a target from config')
    .action(runAction(() => import('./commands/status.js')));

  program
    .command('history')
    .description("list a target's deploys and rollbacks: version, image digest, time, outcome")
    .requiredOption('--target <name>', 'a target from config')
    .option('--rebuild', 'rebuild a lost or damaged history from what the target records (Kubernetes ReplicaSets, Cloud Run revisions; elsewhere what serves)')
    .option('--force', 'with --rebuild: replace a history that still reads (kept as .bak)')
    .action(runAction(() => import('./commands/history.js')));

  withClientSecurity(
    program
      .command('monitor')
      .description(
        'compare live traffic with the reference profile baked into the image: feature and prediction drift, as a gate (exit 1 when one fails); with --labels, live quality from the inference log and the truth that came later',
      )
      .option('--target <name>', "a deployed target: its container's counts, or every Kubernetes pod's, summed")
      .option('--url <base>', 'a running server (repeatable: the counts of several are summed)', collect, [])
      .option('--model-name <name>', 'the model to judge on a server that serves several (default: model.name)')
      .option('--prometheus <url>', 'sum the profile counters of every server through the Prometheus HTTP API')
      .option(
        '--since <range>',
        'with --prometheus: the range to sum over, like 30m, 1h, 7d (default 1h); with --labels: predictions logged since then (7d, or a time like 2026-11-01T00:00:00Z)',
      )
      .option('--until <time>', 'with --labels: predictions logged before then (a duration ago, or a time)')
      .option(
        '--labels <file>',
        'the truth, a CSV or JSONL with id and label (and row for requests of several rows): joined by id with the inference log and scored as `mlops test` scores',
      )
      .option(
        '--log <file>',
        'with --labels: an inference log written by the file sink, or saved from docker logs, kubectl logs or the HTTP sink (repeatable); default: read from --target',
        collect,
        [],
      )
      .option(
        '--baseline <report>',
        "with --labels: a `mlops test --json` report to hold live quality against (default: the serving version's stamped test metrics)",
      )
      .option('--all', "servers' counts since they started, instead of their last monitor.windowRows rows")
      .option(
        '--reference <profile>',
        'with --prometheus or --emit: the reference profile (default: the last build, .mlops/reference-profile.json; for each model of several, .mlops/reference-profiles/<name>.json)',
      )
      .option('--gate <gate>', "a gate such as 'psi_max<0.2', or 'accuracy>=0.9' with --labels (repeatable; adds to monitor.gates)", collect, [])
      .option('--strict', 'too few rows, or no reference, fails (exit 1) instead of warning')
      .option('--markdown <file>', 'write a Markdown summary (also appended to $GITHUB_STEP_SUMMARY)')
      .option('--html <file>', 'write a self-contained HTML page with reference and live histograms')
      .option(
        '--emit <kind>',
        'instead of judging traffic, generate prometheus-rules (alerting rules) or grafana-dashboard (dashboard JSON) for the model from the reference profile',
      )
      .option('--output <file>', 'with --emit: write here instead of to stdout'),
  ).action(runAction(() => import('./commands/monitor.js')));

  program
    .command('serve')
    .description('serve a model over the Open Inference Protocol v2 (REST with binary tensors, and gRPC) until SIGTERM or Ctrl-C')
    .option('--model <file>', 'the .onnx model, or an export folder: images and texts in, labels out (default: model.path from config)')
    .option('--host <address>', 'address to bind (default 127.0.0.1; env HOST)')
    .option('--port <number>', 'port to listen on, 0 for any free port (default 8080; env PORT)')
    .option('--grpc-port <number>', 'gRPC port, 0 turns gRPC off (default 8081; env GRPC_PORT)')
    .option('--workers <n>', 'inference worker threads, 0 for the main thread (default 2; env MLOPS_WORKERS)')
    .option('--name <name>', 'model name in URLs (default: from the file name)')
    .option('--sha256 <hex>', 'refuse to start unless the model file has this sha256')
    .option('--no-batching', 'run every request on its own')
    .option('--max-batch-size <rows>', 'most rows in one batched run (default 32)')
    .option('--batch-wait-ms <ms>', 'how long a request may wait for others to batch with (default 0)')
    .option('--threads <n>', 'ONNX Runtime threads per session (default: the cores shared out between the workers)')
    .option('--profile <file>', 'a reference profile (from `mlops build`) to count live traffic against (env MLOPS_PROFILE_PATH)')
    .option(
      '--auth-token-file <file>',
      'require a bearer token from this file (one a line, or sha256:<hex>) on every route but health (env MLOPS_AUTH_TOKEN_FILE)',
    )
    .option('--tls-cert <file>', 'serve HTTPS and gRPC over TLS with this PEM certificate (env MLOPS_TLS_CERT)')
    .option('--tls-key <file>', "the certificate's PEM private key (env MLOPS_TLS_KEY)")
    .option('--tls-client-ca <file>', 'require client certificates issued by this CA: mutual TLS (env MLOPS_TLS_CLIENT_CA)')
    .option('--repository <file>', 'serve the models and versions a model repository file lists (env MLOPS_MODEL_REPOSITORY; docs/server.md, "Several models")')
    .action(runAction(() => import('./commands/serve.js')));
}

export async function main(argv: string[], io: MainIO = {}): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  const env = io.env ?? process.env;
  const cwd = io.cwd ?? process.cwd();
  let exitCode: number = ExitCode.ok;
  let reporter: Reporter | undefined;

  const program = new Command()
    .name('mlops')
    .description('Package, test, benchmark, version and deploy ONNX models.')
    .version(VERSION, '-V, --version')
    .addOption(new Option('--config <path>', 'config file (default: mlops.config.* or package.json "mlops" in this folder)'))
    .option('--json', 'print one JSON document on stdout; logs go to stderr', false)
    .option('--verbose', 'more detail, and stack traces on errors', false)
    .option('--no-color', 'no colours (also when NO_COLOR is set)')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => void stdout.write(s),
      writeErr: (s) => void stderr.write(s),
      // The parser's errors go through the reporter like every other: one line, a hint, and under --json one document.
      outputError: () => undefined,
    });

  const runAction: RunAction = <Flags extends OptionValues>(load: () => Promise<CommandModule<Flags>>) =>
    // Commander calls an action with its command as `this`: the flags and the argument are read from it.
    async function (this: Command): Promise<void> {
      const globals = this.optsWithGlobals<GlobalOptions>();
      reporter = new Reporter({
        json: Boolean(globals.json),
        verbose: Boolean(globals.verbose),
        color: useColor(stderr, globals.color === false, env),
        interactive: isInteractive(stderr, env) && !globals.json,
        stdout,
        stderr,
      });
      const ctx = createContext(cwd, env, reporter, globals);
      const { run } = await load();
      exitCode = await run(this.opts<Flags>(), ctx, this.args.at(0));
    };
  registerCommands(program, runAction);

  const json = argv.includes('--json');
  // Ctrl-C or SIGTERM under --json still prints one document; the process then ends by the signal (130, 143).
  // Not for serve: a signal is how a server is asked to drain and stop, and it answers with its own exit.
  const first = argv.find((a) => program.commands.some((c) => c.name() === a));
  const named = program.commands.find((c) => c.name() === first);
  const reportInterrupt = json && named?.name() !== 'serve' ? cleanupOnInterrupt(() => writeInterrupted(stdout)) : () => undefined;
  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
  } catch (error) {
    reporter ??= new Reporter({
      json,
      verbose: argv.includes('--verbose'),
      color: useColor(stderr, argv.includes('--no-color'), env),
      interactive: false,
      stdout,
      stderr,
    });
    if (error instanceof CommanderError) {
      // Help and --version end here with 0; usage mistakes with 2, reported as any bad input is.
      if (error.exitCode === 0) return ExitCode.ok;
      return reporter.error(inputError(error.message.replace(/^error:\s*/, ''), usageHint(named)));
    }
    const signal = interruptedBy();
    if (signal) {
      // A failure caused by the cleanup that Ctrl-C started is not worth reporting.
      stderr.write(`interrupted (${signal}); cleaned up\n`);
      return signalExitCode(signal);
    }
    return reporter.error(error);
  } finally {
    reportInterrupt();
  }
}

/** Where to read the usage: the command's own --help when one was named, else the list of commands. */
function usageHint(named: Command | undefined): string {
  return named ? `see \`mlops ${named.name()} --help\`` : 'see `mlops --help` for the commands';
}

/** The one --json document of a command a signal ended: what the process's exit status will say. */
function writeInterrupted(stdout: OutputStream): Promise<void> {
  const signal = interruptedBy() ?? 'SIGINT';
  const body = `${JSON.stringify({ error: { message: `interrupted (${signal}); what the command started was cleaned up`, hint: null, exitCode: signalExitCode(signal) } }, null, 2)}\n`;
  // The process ends by the signal right after: a pipe must have taken the document first.
  if (stdout !== process.stdout) return Promise.resolve(void stdout.write(body));
  return new Promise((resolve) => process.stdout.write(body, () => resolve()));
}
