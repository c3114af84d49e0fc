// "Collab: Select Model": one quick pick from "which server" to "which model", with the local
// servers probed while the user looks. The decisions (presets, listing, prompt style, write
// order) are in models.ts; this file is only the VS Code side.

import * as vscode from 'vscode';
import { setApiKey, updateSetting } from './commands';
import {
  EMBEDDED_MODEL,
  EMBEDDED_SETTINGS,
  PRESETS,
  endpointModelSettings,
  listModels,
  noModelsMessage,
  normalizeEndpoint,
  presetFor,
  promptChoice,
  settingWrites,
  type ListResult,
  type ModelInfo,
  type ModelSettings,
} from './models';
import type { Secrets } from './secrets';
import { readCollabSettings } from './server';

/** A probe only decides what the first list says; the real listing waits longer. */
const PROBE_TIMEOUT_MS = 1500;
const LIST_TIMEOUT_MS = 5000;

type SourceItem = vscode.QuickPickItem & { source?: { kind: 'endpoint'; endpoint: string; name: string } | { kind: 'other' } | { kind: 'embedded' } };

function probeText(r: ListResult | undefined): string {
  if (!r) return '$(loading~spin) checking...';
  if (r.ok) return `$(pass) running: ${r.models.length} model${r.models.length === 1 ? '' : 's'}`;
  return r.failure === 'unreachable' ? '$(circle-slash) not running' : `$(warning) ${r.message}`;
}

/** Step 1: where the model comes from. Resolves with the chosen item, or undefined. */
async function pickSource(apiKey: string | null, probes: Map<string, ListResult>): Promise<SourceItem | undefined> {
  const { settings } = readCollabSettings();
  const configured = settings.endpointUrl ? normalizeEndpoint(settings.endpointUrl) : '';
  const endpoints: { endpoint: string; name: string; label: string }[] = [];
  if (configured && !presetFor(configured)) endpoints.push({ endpoint: configured, name: configured, label: '$(globe) Configured endpoint' });
  for (const p of PRESETS) endpoints.push({ endpoint: p.endpoint, name: p.label, label: `$(server-process) ${p.label}` });

  const build = (): SourceItem[] => [
    ...endpoints.map(
      (e): SourceItem => ({
        label: e.label,
        description: e.endpoint + (e.endpoint === configured && settings.backend === 'openai' ? '  (current)' : ''),
        detail: probeText(probes.get(e.endpoint)),
        source: { kind: 'endpoint', endpoint: e.endpoint, name: e.name },
      }),
    ),
    { label: '$(edit) Other OpenAI-compatible URL...', source: { kind: 'other' } },
    { label: '', kind: vscode.QuickPickItemKind.Separator },
    {
      label: `$(chip) Embedded: ${EMBEDDED_MODEL}`,
      description: settings.backend === 'llamacpp' && settings.model === EMBEDDED_MODEL ? '(current)' : '',
      detail: 'llama.cpp inside the server: no other server to run',
      source: { kind: 'embedded' },
    },
  ];

  const qp = vscode.window.createQuickPick<SourceItem>();
  qp.title = 'Collab: Select Model';
  qp.placeholder = 'Where the model runs';
  qp.matchOnDescription = true;
  qp.items = build();
  qp.busy = true;
  let pending = endpoints.length;
  let closed = false;
  for (const e of endpoints) {
    void listModels(e.endpoint, { apiKey, timeoutMs: PROBE_TIMEOUT_MS }).then((r) => {
      probes.set(e.endpoint, r);
      if (closed) return;
      // Replacing the items would move the highlight back to the top: keep it where it was.
      const active = qp.activeItems[0]?.label;
      qp.items = build();
      const again = qp.items.find((i) => i.label === active);
      if (again) qp.activeItems = [again];
      qp.busy = --pending > 0;
    });
  }
  return new Promise((resolve) => {
    let chosen: SourceItem | undefined;
    qp.onDidAccept(() => {
      chosen = qp.selectedItems[0];
      qp.hide();
    });
    qp.onDidHide(() => {
      closed = true;
      qp.dispose();
      resolve(chosen);
    });
    qp.show();
  });
}

/** The endpoint's models, asking again after a failure the user can fix (start it, set a key). */
async function fetchModels(endpoint: string, secrets: Secrets, probe: ListResult | undefined): Promise<ModelInfo[] | undefined> {
  let result: ListResult | undefined = probe?.ok ? probe : undefined;
  for (;;) {
    if (!result) {
      const apiKey = await secrets.getApiKey();
      result = await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Window, title: `Collab: listing the models at ${endpoint}` },
        () => listModels(endpoint, { apiKey, timeoutMs: LIST_TIMEOUT_MS }),
      );
    }
    if (result.ok) {
      if (result.models.length === 0) {
        void vscode.window.showWarningMessage(`Collab: ${noModelsMessage(endpoint)}.`);
        return undefined;
      }
      return result.models;
    }
    const actions = result.failure === 'unauthorized' ? ['Set API Key', 'Retry'] : ['Retry'];
    const action = await vscode.window.showErrorMessage(`Collab: ${result.message}`, ...actions);
    if (action === 'Set API Key') await setApiKey(secrets);
    else if (action !== 'Retry') return undefined;
    result = undefined;
  }
}

/** Step 2: one of the endpoint's models; coder models first, embedding models last. */
async function pickModel(endpoint: string, name: string, models: ModelInfo[]): Promise<string | undefined> {
  const { settings } = readCollabSettings();
  const current = settings.backend === 'openai' && normalizeEndpoint(settings.endpointUrl) === endpoint ? settings.model : undefined;
  type ModelItem = vscode.QuickPickItem & { model: string; rank: number };
  const items = models
    .map((m): ModelItem => {
      const choice = promptChoice(m.id);
      const facts = [m.ownedBy && `owned by ${m.ownedBy}`, m.contextLength && `context ${m.contextLength} tokens`].filter(Boolean);
      return {
        model: m.id,
        label: m.id,
        description: choice.reason + (m.id === current ? '  (current)' : ''),
        detail: facts.length ? facts.join(', ') : undefined,
        rank: choice.embedding ? 2 : choice.style === 'fim' ? 0 : 1,
      };
    })
    .sort((a, b) => a.rank - b.rank);
  const pick = await vscode.window.showQuickPick(items, {
    title: `Collab: a model at ${name}`,
    placeHolder: `${models.length} model${models.length === 1 ? '' : 's'} at ${endpoint}`,
    matchOnDescription: true,
  });
  return pick?.model;
}

/** Writes the choice in models.ts's order, each key where the user keeps it (see updateSetting). */
async function apply(target: ModelSettings): Promise<void> {
  const { settings } = readCollabSettings();
  for (const [key, value] of settingWrites(settings, target)) await updateSetting(key, value);
}

export async function selectModel(secrets: Secrets): Promise<void> {
  const probes = new Map<string, ListResult>();
  const pick = await pickSource(await secrets.getApiKey(), probes);
  const source = pick?.source;
  if (!source) return;
  if (source.kind === 'embedded') {
    await apply(EMBEDDED_SETTINGS);
    void vscode.window.setStatusBarMessage(`Collab: the embedded ${EMBEDDED_MODEL} on llama.cpp`, 4000);
    return;
  }
  let endpoint: string;
  let name: string;
  if (source.kind === 'other') {
    const { settings } = readCollabSettings();
    const url = await vscode.window.showInputBox({
      title: 'Collab: OpenAI-compatible base URL',
      value: settings.endpointUrl || 'http://127.0.0.1:8000/v1',
      prompt: 'The base URL, usually ending in /v1; its models are listed next',
      validateInput: (v) => (/^https?:\/\/\S+$/i.test(v.trim()) ? null : 'An http:// or https:// URL'),
      ignoreFocusOut: true,
    });
    if (url === undefined) return;
    endpoint = normalizeEndpoint(url);
    name = endpoint;
  } else {
    endpoint = source.endpoint;
    name = source.name;
  }
  const models = await fetchModels(endpoint, secrets, probes.get(endpoint));
  if (!models) return;
  const model = await pickModel(endpoint, name, models);
  if (model === undefined) return;
  await apply(endpointModelSettings(endpoint, model));
  void vscode.window.showInformationMessage(`Collab: completions now come from ${model} at ${name}; ${promptChoice(model).reason}.`);
}
