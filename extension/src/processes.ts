// Running short processes: the interpreter probe and the install steps.

import { spawn } from 'node:child_process';
import { PROBE_SCRIPT, parseProbe, type ProbeResult } from './launch';

export interface RunOutput {
  code: number | null;
  stdout: string;
  stderr: string;
  error: string | null;
}

export interface RunOptions {
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  /** Called with each chunk of output (stdout and stderr together). */
  onOutput?: (text: string) => void;
  /** Aborting kills the process. */
  signal?: AbortSignal;
}

/** Runs a command without a shell and collects its output. Never rejects. */
export function runProcess(command: string, args: readonly string[], opts: RunOptions = {}): Promise<RunOutput> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let error: string | null = null;
    let settled = false;
    const done = (code: number | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      resolve({ code, stdout, stderr, error });
    };
    const child = spawn(command, args, { env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'], windowsHide: true });
    const onAbort = (): void => {
      error = 'cancelled';
      child.kill();
    };
    opts.signal?.addEventListener('abort', onAbort);
    const timer = setTimeout(() => {
      error = `timed out after ${Math.round((opts.timeoutMs ?? 0) / 1000)} s`;
      child.kill();
    }, opts.timeoutMs ?? 2 ** 31 - 1);
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      stdout += d;
      opts.onOutput?.(d);
    });
    child.stderr.on('data', (d: string) => {
      stderr += d;
      opts.onOutput?.(d);
    });
    child.on('error', (e) => {
      error = e.message;
      done(null);
    });
    child.on('close', (code) => done(code));
  });
}

/** Asks an interpreter whether it can run the server. */
export async function probeInterpreter(python: string, timeoutMs = 60_000): Promise<ProbeResult> {
  const out = await runProcess(python, ['-c', PROBE_SCRIPT], { timeoutMs });
  return parseProbe(python, out);
}
