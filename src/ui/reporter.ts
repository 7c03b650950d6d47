import { Chalk, type ChalkInstance } from 'chalk';
import ora, { type Ora } from 'ora';
import { stripVTControlCharacters } from 'node:util';
import { ExitCode, isMlopsError, errorMessage } from '../errors.js';

export interface OutputStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
}

export interface ReporterOptions {
  json: boolean;
  verbose: boolean;
  color: boolean;
  interactive: boolean;
  stdout: OutputStream;
  stderr: OutputStream;
}

export interface Task {
  update(text: string): void;
  /** Transient progress (bytes so far): on a spinner only; without a terminal it is dropped, as Docker drops it. */
  progress(text: string): void;
  succeed(text?: string): void;
  fail(text?: string): void;
}

/**
 * The only thing that writes to the terminal. Data goes to stdout (one JSON
 * document under --json); progress and logs go to stderr, so a piped stdout
 * stays machine-readable.
 */
export class Reporter {
  readonly style: ChalkInstance;
  readonly json: boolean;
  readonly verbose: boolean;
  private readonly options: ReporterOptions;
  private readonly secrets = new Set<string>();
  private spinner: Ora | undefined;
  private resultWritten = false;

  constructor(options: ReporterOptions) {
    this.options = options;
    this.json = options.json;
    this.verbose = options.verbose;
    this.style = new Chalk({ level: options.color ? 1 : 0 });
  }

  /** A terminal that shows spinners and progress; false in CI and under --json, where progress is a plain line now and then. */
  get interactive(): boolean {
    return this.options.interactive && !this.options.json;
  }

  /** Registers a value (password, token) that must never reach output. */
  maskSecret(secret: string | undefined): void {
    if (secret && secret.length >= 3) this.secrets.add(secret);
  }

  mask(text: string): string {
    let masked = text;
    for (const secret of this.secrets) masked = masked.split(secret).join('***');
    return masked;
  }

  info(message: string): void {
    this.log(message);
  }

  success(message: string): void {
    this.log(`${this.style.green('✔')} ${message}`);
  }

  warn(message: string): void {
    this.log(`${this.style.yellow('warning:')} ${message}`);
  }

  debug(message: string): void {
    if (this.verbose) this.log(this.style.dim(message));
  }

  /** A step that takes a while: a spinner on a TTY, a start and an end line otherwise. */
  task(text: string): Task {
    if (this.options.interactive && !this.spinner) {
      const spinner = ora({ text, stream: this.options.stderr as NodeJS.WritableStream, color: 'cyan' }).start();
      this.spinner = spinner;
      const end = () => {
        if (this.spinner === spinner) this.spinner = undefined;
      };
      const update = (next: string) => {
        // One line: a wrapped spinner text leaves a trail of half-cleared lines.
        const width = Math.max(20, ((this.options.stderr as { columns?: number }).columns ?? 80) - 4);
        const line = this.mask(next).replace(/\s+/g, ' ');
        spinner.text = line.length > width ? `${line.slice(0, width - 1)}…` : line;
      };
      return {
        update,
        progress: update,
        succeed: (done) => {
          spinner.succeed(this.mask(done ?? spinner.text));
          end();
        },
        fail: (done) => {
          spinner.fail(this.mask(done ?? spinner.text));
          end();
        },
      };
    }
    this.log(`${text}...`);
    return {
      update: (next) => this.log(`  ${next}`),
      progress: () => undefined,
      succeed: (done) => this.success(done ?? text),
      fail: (done) => this.log(`${this.style.red('✖')} ${done ?? text}`),
    };
  }

  /** Runs `work` inside a task; the task fails if the work throws. */
  async step<T>(text: string, work: (task: Task) => Promise<T>, done?: (value: T) => string): Promise<T> {
    const task = this.task(text);
    try {
      const value = await work(task);
      task.succeed(done ? done(value) : undefined);
      return value;
    } catch (error) {
      task.fail();
      throw error;
    }
  }

  /**
   * The command's result: exactly one JSON document on stdout under --json,
   * otherwise the human rendering.
   */
  result<T>(data: T, render: (data: T, style: ChalkInstance) => string): void {
    if (this.resultWritten) throw new Error('Reporter.result called twice');
    this.resultWritten = true;
    if (this.json) {
      this.options.stdout.write(this.mask(JSON.stringify(data, jsonReplacer, 2)) + '\n');
      return;
    }
    const text = render(data, this.style);
    if (text) this.options.stdout.write(this.mask(text.endsWith('\n') ? text : text + '\n'));
  }

  /** Prints an error as one line plus a hint; the stack only with --verbose. */
  error(error: unknown): ExitCode {
    this.stopSpinner();
    const code = isMlopsError(error) ? error.exitCode : ExitCode.internal;
    // --json promises one document on stdout, failures included.
    if (this.json && !this.resultWritten) {
      this.resultWritten = true;
      const problems = isMlopsError(error) && error.problems ? { problems: error.problems } : {};
      const body = { error: { message: errorMessage(error), hint: isMlopsError(error) ? (error.hint ?? null) : null, exitCode: code, ...problems } };
      this.options.stdout.write(this.mask(JSON.stringify(body, null, 2)) + '\n');
    }
    if (isMlopsError(error)) {
      this.log(`${this.style.red('error:')} ${error.message}`);
      if (error.details) this.log(error.details.replace(/\s+$/, ''));
      if (error.hint) this.log(`${this.style.dim('hint:')} ${error.hint}`);
      if (this.verbose && error.cause instanceof Error && error.cause.stack) this.log(error.cause.stack);
      return error.exitCode;
    }
    this.log(`${this.style.red('internal error:')} ${errorMessage(error)}`);
    if (this.verbose && error instanceof Error && error.stack) this.log(error.stack);
    else this.log(`${this.style.dim('hint:')} this is a bug in mlops; rerun with --verbose and report the output`);
    return ExitCode.internal;
  }

  private stopSpinner(): void {
    if (this.spinner) {
      this.spinner.stop();
      this.spinner = undefined;
    }
  }

  private log(message: string): void {
    const line = this.mask(message) + '\n';
    if (this.spinner) {
      // Keep the spinner on its own line below the log output.
      this.spinner.clear();
      this.options.stderr.write(line);
      this.spinner.render();
    } else {
      this.options.stderr.write(line);
    }
  }
}

function jsonReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? Number(value) : value;
}

/** Left-aligned text table, widths measured without ANSI colour codes. */
export function renderTable(header: string[], rows: string[][]): string {
  const width = (s: string) => stripVTControlCharacters(s).length;
  const widths = header.map((h, i) => Math.max(width(h), ...rows.map((r) => width(r[i] ?? ''))));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c + ' '.repeat(Math.max(0, widths[i] - width(c))))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}
