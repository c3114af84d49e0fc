// Models for "Collab: Select Model": the local servers users run (presets with their default
// ports), the models an OpenAI-compatible endpoint lists at `GET {endpoint}/models`, the prompt
// style a model's name implies, and the order in which the choice is written to settings.
// Plain: no `vscode` import, so the unit tests run these against real HTTP servers.

import type { BackendKind, FimTemplate } from './protocol';

/** A local OpenAI-compatible server at its default address, with what to do when it is not up. */
export interface ServerPreset {
  id: 'ollama' | 'llama.cpp' | 'vllm' | 'lmstudio';
  label: string;
  endpoint: string;
  /** Completes "nothing answers at URL; ..." */
  startHint: string;
  /** Said when the server answers with no models. */
  noModelsHint: string;
}

export const PRESETS: readonly ServerPreset[] = [
  {
    id: 'ollama',
    label: 'Ollama',
    endpoint: 'http://127.0.0.1:11434/v1',
    startHint: 'start Ollama with `ollama serve`',
    noModelsHint: 'pull one with `ollama pull qwen2.5-coder:1.5b-base`',
  },
  {
    id: 'llama.cpp',
    label: "llama.cpp's server",
    endpoint: 'http://127.0.0.1:8080/v1',
    startHint: 'start it with `llama-server -m MODEL.gguf --port 8080`',
    noModelsHint: 'start `llama-server` with `-m MODEL.gguf`',
  },
  {
    id: 'vllm',
    label: 'vLLM',
    endpoint: 'http://127.0.0.1:8000/v1',
    startHint: 'start it with `vllm serve Qwen/Qwen2.5-Coder-1.5B --port 8000`',
    noModelsHint: 'start `vllm serve` with a model',
  },
  {
    id: 'lmstudio',
    label: 'LM Studio',
    endpoint: 'http://127.0.0.1:1234/v1',
    startHint: "start LM Studio's server (Developer tab, or `lms server start`)",
    noModelsHint: 'load one with `lms load MODEL` or in the Developer tab',
  },
];

/** The embedded default: llama.cpp inside the server on the GGUF the server install ships. */
export const EMBEDDED_MODEL = 'smollm2-135m-instruct';

/** A base URL without trailing slashes; the same URL however the user typed it. */
export function normalizeEndpoint(endpoint: string): string {
  return endpoint.trim().replace(/\/+$/, '');
}

/** The preset whose address `endpoint` is (localhost and 127.0.0.1 alike), if any. */
export function presetFor(endpoint: string): ServerPreset | undefined {
  let url: URL;
  try {
    url = new URL(normalizeEndpoint(endpoint));
  } catch {
    return undefined;
  }
  const loopback = ['127.0.0.1', 'localhost', '[::1]', '0.0.0.0'].includes(url.hostname);
  if (!loopback) return undefined;
  return PRESETS.find((p) => new URL(p.endpoint).port === url.port);
}

/** `GET` target of the model listing: `{endpoint}/models`, e.g. `http://127.0.0.1:11434/v1/models`. */
export function modelsUrl(endpoint: string): string {
  return `${normalizeEndpoint(endpoint)}/models`;
}

export interface ModelInfo {
  id: string;
  ownedBy?: string;
  /** Context length when the server says (vLLM's `max_model_len`, llama.cpp's `meta.n_ctx_train`). */
  contextLength?: number;
}

export type ListFailure = 'badUrl' | 'unreachable' | 'timeout' | 'unauthorized' | 'http' | 'notJson' | 'notList';

export type ListResult =
  | { ok: true; endpoint: string; models: ModelInfo[] }
  | { ok: false; endpoint: string; failure: ListFailure; status?: number; message: string };

export interface ListOptions {
  apiKey?: string | null;
  /** Local servers answer in milliseconds; a short wait keeps the quick pick responsive. */
  timeoutMs?: number;
}

const asRecord = (v: unknown): Record<string, unknown> | undefined =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;

function modelInfo(entry: unknown): ModelInfo | undefined {
  const e = asRecord(entry);
  if (!e || typeof e.id !== 'string' || e.id.trim() === '') return undefined;
  const info: ModelInfo = { id: e.id };
  if (typeof e.owned_by === 'string' && e.owned_by) info.ownedBy = e.owned_by;
  const ctx = typeof e.max_model_len === 'number' ? e.max_model_len : asRecord(e.meta)?.n_ctx_train;
  if (typeof ctx === 'number' && ctx > 0) info.contextLength = ctx;
  return info;
}

/** The error's cause code from Node's fetch (`TypeError('fetch failed', {cause: {code}})`). */
function causeCode(err: unknown): string | undefined {
  const cause = (err as { cause?: unknown } | null)?.cause;
  const code = asRecord(cause)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** What to say when the connection fails (`code`: Node's, like ECONNREFUSED): for a preset's
 * address, how to start that server. */
export function unreachableMessage(endpoint: string, code?: string): string {
  const base = normalizeEndpoint(endpoint);
  const preset = presetFor(base);
  const start = preset ? preset.startHint : 'is the server running, and is the URL right?';
  const what = code === 'ENOTFOUND' ? `no host ${new URL(base).hostname} is known` : `nothing answers at ${base}`;
  return `${what}; ${start}${code && code !== 'ECONNREFUSED' && code !== 'ENOTFOUND' ? ` (${code})` : ''}`;
}

/**
 * The models an OpenAI-compatible server lists (`GET {endpoint}/models`, with the API key as a
 * bearer token when one is set). Never throws: a failure comes back with a message that says
 * what to do (start the server, set the key, fix the URL).
 */
export async function listModels(endpoint: string, opts: ListOptions = {}): Promise<ListResult> {
  const base = normalizeEndpoint(endpoint);
  const fail = (failure: ListFailure, message: string, status?: number): ListResult =>
    status === undefined ? { ok: false, endpoint: base, failure, message } : { ok: false, endpoint: base, failure, status, message };
  if (!/^https?:\/\/[^\s/]+/i.test(base)) {
    return fail('badUrl', `${JSON.stringify(endpoint)} is not an http(s) base URL (like http://127.0.0.1:11434/v1)`);
  }
  const url = modelsUrl(base);
  const timeoutMs = opts.timeoutMs ?? 3000;
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (opts.apiKey) headers.Authorization = `Bearer ${opts.apiKey}`;
  const preset = presetFor(base);
  let res: Response;
  let body: string;
  try {
    res = await fetch(url, { headers, signal: AbortSignal.timeout(timeoutMs) });
    body = await res.text();
  } catch (err) {
    if (err instanceof DOMException && (err.name === 'TimeoutError' || err.name === 'AbortError')) {
      return fail('timeout', `${base} did not answer within ${(timeoutMs / 1000).toFixed(1)} s; is the server busy loading a model?`);
    }
    return fail('unreachable', unreachableMessage(base, causeCode(err)));
  }

  if (res.status === 401 || res.status === 403) {
    return fail('unauthorized', `${base} refused the request (HTTP ${res.status}): it needs an API key; set it with Collab: Set API Key`, res.status);
  }
  if (!res.ok) {
    const hint = res.status === 404 ? `; the base URL usually ends in /v1 (like ${preset?.endpoint ?? 'http://127.0.0.1:8000/v1'})` : '';
    return fail('http', `${url} answered HTTP ${res.status}${hint}`, res.status);
  }
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    const type = res.headers.get('content-type') ?? 'no content type';
    return fail('notJson', `${url} did not answer with JSON (${type}); is it an OpenAI-compatible server, with a base URL ending in /v1?`, res.status);
  }
  const data = asRecord(json)?.data;
  if (!Array.isArray(data)) {
    return fail('notList', `${url} answered JSON without a "data" list of models; is it an OpenAI-compatible server?`, res.status);
  }
  const models = data.map(modelInfo).filter((m): m is ModelInfo => m !== undefined);
  return { ok: true, endpoint: base, models };
}

/** What an empty listing means at this endpoint, and what to do about it. */
export function noModelsMessage(endpoint: string): string {
  const preset = presetFor(endpoint);
  return `${normalizeEndpoint(endpoint)} serves no models; ${preset ? preset.noModelsHint : 'load one into the server'}`;
}

// ---- prompt style ---------------------------------------------------------------------------

/**
 * The server's FIM templates and the model names each fits: the same regexes as
 * `server/backends/fim.py` (a unit test compares them), so "auto" there and the choice here agree
 * on which template a name means.
 */
export const FIM_MODEL_PATTERNS: readonly { template: Exclude<FimTemplate, 'auto' | 'none'>; pattern: RegExp }[] = [
  { template: 'qwen2.5-coder', pattern: /qwen[\d.]*[-_ ]?coder/i },
  { template: 'starcoder2', pattern: /starcoder|santacoder|codeqwen/i },
  { template: 'deepseek-coder', pattern: /deepseek[-_ ]?coder/i },
  { template: 'codellama', pattern: /code[-_ ]?llama/i },
];

const INSTRUCT = /instruct|chat|[-_:.]it(?:$|[-_:.])|assistant/i;
const EMBEDDING = /embed|(?:^|[/:_-])(?:bge|e5|gte|minilm)(?:$|[-_:.])|rerank/i;
/** Base markers in Ollama tags: `qwen2.5-coder:1.5b-base`, `codellama:7b-code`. */
const OLLAMA_BASE_TAG = /base|(?:^|[-_])code(?:$|[-_])/i;

export interface PromptChoice {
  style: 'fim' | 'chat';
  /** The value for `collab.fimTemplate`: a template name for FIM, `none` for chat prompts. */
  fimTemplate: FimTemplate;
  /** Not a completion model at all (an embedding model a server lists beside chat models). */
  embedding: boolean;
  /** Why, in a few words, for the quick pick. */
  reason: string;
}

/**
 * How to prompt a model, from its name: a base coder model with a template the server knows gets
 * fill-in-the-middle with that template; instruct and chat models, and models with no known
 * template, get chat prompts. Explicit values, not "auto": the server's "auto" looks at the
 * family only, so it would send FIM tokens to `qwen2.5-coder-7b-instruct` too.
 *
 * Names follow their server: Ollama tags (`name:tag`) without a base marker are the instruct
 * builds (`qwen2.5-coder:7b`, `deepseek-coder:6.7b`, `codellama:7b`) except StarCoder2's, which are
 * base; hub ids and GGUF files without "instruct"/"chat" are base (`Qwen/Qwen2.5-Coder-1.5B`).
 */
export function promptChoice(model: string): PromptChoice {
  const name = model.trim();
  const chat = (reason: string, embedding = false): PromptChoice => ({ style: 'chat', fimTemplate: 'none', embedding, reason });
  if (EMBEDDING.test(name)) return chat('embedding model: it cannot complete code', true);
  const family = FIM_MODEL_PATTERNS.find((f) => f.pattern.test(name));
  if (!family) return chat('chat prompts (no fill-in-the-middle template for this model)');
  if (INSTRUCT.test(name)) return chat(`instruct model: chat prompts`);
  const colon = name.lastIndexOf(':');
  const tag = colon > 0 ? name.slice(colon + 1) : '';
  const ollamaTag = tag && !/[\\/]/.test(tag) ? tag : undefined; // not `C:\models\x.gguf`
  if (ollamaTag !== undefined && !/starcoder/i.test(name) && !OLLAMA_BASE_TAG.test(ollamaTag)) {
    return chat(`instruct build (Ollama's "${ollamaTag}" tag): chat prompts`);
  }
  if (family.template === 'codellama' && /python/i.test(name)) {
    return chat('Code Llama - Python has no infilling: chat prompts');
  }
  return { style: 'fim', fimTemplate: family.template, embedding: false, reason: `base coder model: fill-in-the-middle (${family.template})` };
}

// ---- writing the choice ---------------------------------------------------------------------

/** The settings a choice amounts to. */
export interface ModelSettings {
  backend: BackendKind;
  endpointUrl?: string;
  model: string;
  fimTemplate: FimTemplate;
}

/** Settings for a model served at an OpenAI-compatible endpoint. */
export function endpointModelSettings(endpoint: string, model: string): ModelSettings {
  return { backend: 'openai', endpointUrl: normalizeEndpoint(endpoint), model, fimTemplate: promptChoice(model).fimTemplate };
}

/** Settings for the embedded default (endpointUrl is left as it is, for switching back). */
export const EMBEDDED_SETTINGS: Readonly<ModelSettings> = Object.freeze({ backend: 'llamacpp', model: EMBEDDED_MODEL, fimTemplate: 'auto' });

export type SettingWrite = readonly [key: 'backend' | 'endpointUrl' | 'model' | 'fimTemplate', value: string];

/**
 * The `collab.*` writes that take the current settings to `target`, in a safe order. Each write
 * reaches the server on its own (it reloads when backend, endpoint, model or template change), so
 * the order keeps every state in between cheap and valid: the `openai` backend never sees an
 * empty endpoint, and an in-process backend never loads a model name meant for an HTTP server.
 * Unchanged keys are not written.
 */
export function settingWrites(current: ModelSettings & { endpointUrl: string }, target: ModelSettings): SettingWrite[] {
  const order: SettingWrite[0][] =
    target.backend === 'openai'
      ? ['endpointUrl', 'backend', 'model', 'fimTemplate']
      : current.backend === 'openai'
        ? ['model', 'fimTemplate', 'backend']
        : ['backend', 'model', 'fimTemplate'];
  const writes: SettingWrite[] = [];
  for (const key of order) {
    const value = target[key];
    if (value !== undefined && value !== current[key]) writes.push([key, value]);
  }
  return writes;
}
