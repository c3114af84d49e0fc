// Settings (`collab.*`): reading them with defaults and checks, and mapping them to what the
// server gets in `initializationOptions` and in the `workspace/configuration` answer.
// No `vscode` import: the reader is a plain function `(key) => value`.

import { BACKEND_KINDS, FIM_TEMPLATES, type BackendKind, type FimTemplate } from './protocol';

export const SECTION = 'collab';

export type LogLevel = 'debug' | 'info' | 'warning' | 'error';
const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warning', 'error'];

/** Every `collab.*` setting, typed and defaulted. */
export interface CollabSettings {
  backend: BackendKind;
  endpointUrl: string;
  model: string;
  fimTemplate: FimTemplate;
  analyzers: string[];
  maxIterations: number;
  latencyBudgetMs: number;
  debounceMs: number;
  maxTokens: number;
  enabledLanguages: string[];
  inlineCompletionsEnabled: boolean;
  pythonPath: string;
  serverPythonPath: string;
  serverLogLevel: LogLevel;
}

export const DEFAULTS: Readonly<CollabSettings> = Object.freeze({
  backend: 'llamacpp',
  endpointUrl: '',
  model: 'smollm2-135m-instruct',
  fimTemplate: 'auto',
  analyzers: ['syntax', 'mypy', 'signature', 'hallucination'],
  maxIterations: 3,
  latencyBudgetMs: 4000,
  debounceMs: 150,
  maxTokens: 0,
  enabledLanguages: ['python'],
  inlineCompletionsEnabled: true,
  pythonPath: '',
  serverPythonPath: '',
  serverLogLevel: 'info',
});

/** Reads one key under `collab.` (e.g. `'server.pythonPath'`); undefined when unset. */
export type SettingReader = (key: string) => unknown;

export interface ReadResult {
  settings: CollabSettings;
  /** One line per setting that had a wrong value and fell back to its default. */
  problems: string[];
}

function closest(value: string, options: readonly string[]): string | undefined {
  const v = value.toLowerCase();
  return options.find((o) => o.toLowerCase() === v) ?? options.find((o) => o.startsWith(v.slice(0, 3)));
}

/** Reads and checks all settings; a wrong value falls back to the default and is reported. */
export function readSettings(read: SettingReader): ReadResult {
  const problems: string[] = [];
  const s: CollabSettings = { ...DEFAULTS, analyzers: [...DEFAULTS.analyzers], enabledLanguages: [...DEFAULTS.enabledLanguages] };

  const str = (key: string, fallback: string): string => {
    const v = read(key);
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'string') {
      problems.push(`collab.${key} must be a string, got ${JSON.stringify(v)}; using ${JSON.stringify(fallback)}`);
      return fallback;
    }
    return v.trim();
  };
  const oneOf = <T extends string>(key: string, options: readonly T[], fallback: T): T => {
    const v = str(key, fallback);
    if ((options as readonly string[]).includes(v)) return v as T;
    const hint = closest(v, options);
    problems.push(
      `collab.${key} is ${JSON.stringify(v)}; expected one of ${options.join(', ')}` +
        (hint ? ` (did you mean '${hint}'?)` : '') +
        `; using '${fallback}'`,
    );
    return fallback;
  };
  const int = (key: string, min: number, max: number, fallback: number): number => {
    const v = read(key);
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      problems.push(`collab.${key} must be a number, got ${JSON.stringify(v)}; using ${fallback}`);
      return fallback;
    }
    const r = Math.round(v);
    if (r < min || r > max) {
      const clamped = Math.min(max, Math.max(min, r));
      problems.push(`collab.${key} is ${v}; it must be between ${min} and ${max}; using ${clamped}`);
      return clamped;
    }
    return r;
  };
  const strList = (key: string, fallback: string[]): string[] => {
    const v = read(key);
    if (v === undefined || v === null) return fallback;
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) {
      problems.push(`collab.${key} must be a list of strings, got ${JSON.stringify(v)}; using ${JSON.stringify(fallback)}`);
      return fallback;
    }
    const cleaned = [...new Set(v.map((x: string) => x.trim()).filter((x) => x.length > 0))];
    return cleaned;
  };
  const bool = (key: string, fallback: boolean): boolean => {
    const v = read(key);
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'boolean') {
      problems.push(`collab.${key} must be true or false, got ${JSON.stringify(v)}; using ${fallback}`);
      return fallback;
    }
    return v;
  };

  s.backend = oneOf('backend', BACKEND_KINDS, DEFAULTS.backend);
  s.endpointUrl = str('endpointUrl', DEFAULTS.endpointUrl);
  s.model = str('model', DEFAULTS.model) || DEFAULTS.model;
  s.fimTemplate = oneOf('fimTemplate', FIM_TEMPLATES, DEFAULTS.fimTemplate);
  s.analyzers = strList('analyzers', s.analyzers);
  s.maxIterations = int('maxIterations', 1, 50, DEFAULTS.maxIterations);
  s.latencyBudgetMs = int('latencyBudgetMs', 100, 600_000, DEFAULTS.latencyBudgetMs);
  s.debounceMs = int('debounceMs', 0, 10_000, DEFAULTS.debounceMs);
  s.maxTokens = int('maxTokens', 0, 8192, DEFAULTS.maxTokens);
  s.enabledLanguages = strList('enabledLanguages', s.enabledLanguages);
  s.inlineCompletionsEnabled = bool('inlineCompletions.enabled', DEFAULTS.inlineCompletionsEnabled);
  s.pythonPath = str('pythonPath', DEFAULTS.pythonPath);
  s.serverPythonPath = str('server.pythonPath', DEFAULTS.serverPythonPath);
  s.serverLogLevel = oneOf('server.logLevel', LOG_LEVELS, DEFAULTS.serverLogLevel);

  if (s.backend === 'openai' && s.endpointUrl === '') {
    problems.push("collab.backend is 'openai' but collab.endpointUrl is empty; set it to the server's base URL (ending in /v1)");
  } else if (s.endpointUrl !== '' && !/^https?:\/\/[^\s/]+/i.test(s.endpointUrl)) {
    problems.push(`collab.endpointUrl ${JSON.stringify(s.endpointUrl)} is not an http(s) URL (like http://127.0.0.1:8000/v1)`);
  }
  return { settings: s, problems };
}

/** What the server gets for section `collab` (the protocol's camelCase keys; dotted keys nest). */
export interface ServerSettings {
  backend: BackendKind;
  endpointUrl: string;
  model: string;
  fimTemplate: FimTemplate;
  analyzers: string[];
  maxIterations: number;
  latencyBudgetMs: number;
  debounceMs: number;
  /** Server extra (not in docs/protocol.md's table): cap on generated tokens, 0 = per mode. */
  maxTokens: number;
  enabledLanguages: string[];
  inlineCompletions: { enabled: boolean };
  pythonPath: string;
}

export interface InitializationOptions extends ServerSettings {
  apiKey: string | null;
}

/**
 * The settings the server sees. `pythonPath` (the project interpreter for the analyzers) falls
 * back to the Python extension's active interpreter, which only the editor knows. The server's
 * own interpreter (`server.pythonPath`) and the log level stay on the editor side.
 */
export function toServerSettings(s: CollabSettings, activeInterpreter?: string | null): ServerSettings {
  return {
    backend: s.backend,
    endpointUrl: s.endpointUrl,
    model: s.model,
    fimTemplate: s.fimTemplate,
    analyzers: [...s.analyzers],
    maxIterations: s.maxIterations,
    latencyBudgetMs: s.latencyBudgetMs,
    debounceMs: s.debounceMs,
    maxTokens: s.maxTokens,
    enabledLanguages: [...s.enabledLanguages],
    inlineCompletions: { enabled: s.inlineCompletionsEnabled },
    pythonPath: s.pythonPath || activeInterpreter || '',
  };
}

/** `initializationOptions`: the settings plus the API key from SecretStorage (null when unset). */
export function toInitializationOptions(
  s: CollabSettings,
  apiKey: string | null | undefined,
  activeInterpreter?: string | null,
): InitializationOptions {
  return { ...toServerSettings(s, activeInterpreter), apiKey: apiKey ? apiKey : null };
}

/** Settings that need a new server process (the rest reach it by didChangeConfiguration). */
export const RESTART_KEYS = ['server.pythonPath', 'server.logLevel', 'enabledLanguages'] as const;

/** Which of the given keys' changes need a restart; `affects(key)` is VS Code's affectsConfiguration. */
export function needsRestart(affects: (fullKey: string) => boolean): boolean {
  return RESTART_KEYS.some((k) => affects(`${SECTION}.${k}`));
}

/** Languages as an LSP document selector (files and unsaved documents). */
export function documentSelector(languages: readonly string[]): { scheme: string; language: string }[] {
  return languages.flatMap((language) => [
    { scheme: 'file', language },
    { scheme: 'untitled', language },
  ]);
}
