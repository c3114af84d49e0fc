// The user-facing commands that change settings or secrets.

import * as vscode from 'vscode';
import { SECTION } from './config';
import type { BackendKind } from './protocol';
import type { PythonExtension } from './pythonExtension';
import type { Secrets } from './secrets';
import { readCollabSettings } from './server';

/** Writes a setting where it is currently defined (workspace folder, workspace), else globally. */
export async function updateSetting(key: string, value: unknown): Promise<void> {
  const cfg = vscode.workspace.getConfiguration(SECTION);
  const info = cfg.inspect(key);
  const target =
    info?.workspaceFolderValue !== undefined
      ? vscode.ConfigurationTarget.WorkspaceFolder
      : info?.workspaceValue !== undefined
        ? vscode.ConfigurationTarget.Workspace
        : vscode.ConfigurationTarget.Global;
  await cfg.update(key, value, target);
}

export async function toggleInlineCompletions(): Promise<boolean> {
  const { settings } = readCollabSettings();
  const enabled = !settings.inlineCompletionsEnabled;
  await updateSetting('inlineCompletions.enabled', enabled);
  void vscode.window.setStatusBarMessage(`Collab: inline completions ${enabled ? 'on' : 'off'}`, 3000);
  return enabled;
}

interface BackendItem extends vscode.QuickPickItem {
  kind_: BackendKind;
}

export async function selectBackend(secrets: Secrets): Promise<void> {
  const { settings } = readCollabSettings();
  const items: BackendItem[] = [
    {
      kind_: 'llamacpp',
      label: 'Embedded model (llama.cpp)',
      description: settings.backend === 'llamacpp' ? 'current' : '',
      detail: 'A GGUF model inside the server on CPU; the default SmolLM2-135M-Instruct needs no setup.',
    },
    {
      kind_: 'transformers',
      label: 'Checkpoint in the server (transformers)',
      description: settings.backend === 'transformers' ? 'current' : '',
      detail: "A safetensors checkpoint such as collab-train's output; needs the server's `transformers` extra.",
    },
    {
      kind_: 'openai',
      label: 'OpenAI-compatible endpoint',
      description: settings.backend === 'openai' ? `current: ${settings.endpointUrl}` : '',
      detail: 'OpenAI, vLLM serve, Ollama, llama.cpp server, LM Studio. Collab: Select Model lists their models.',
    },
    {
      kind_: 'vllm',
      label: 'vLLM in the server process',
      description: settings.backend === 'vllm' ? 'current' : '',
      detail: 'Needs a GPU and the server installed with its `gpu` extra.',
    },
  ];
  const pick = await vscode.window.showQuickPick(items, { title: 'Collab: Select Backend', placeHolder: 'Where completions come from' });
  if (!pick) return;

  let model = settings.model;
  if (pick.kind_ === 'openai') {
    const url = await vscode.window.showInputBox({
      title: 'Collab: OpenAI-compatible base URL',
      value: settings.endpointUrl || 'http://127.0.0.1:8000/v1',
      prompt: 'The base URL, usually ending in /v1',
      validateInput: (v) => (/^https?:\/\/\S+$/i.test(v.trim()) ? null : 'An http:// or https:// URL'),
      ignoreFocusOut: true,
    });
    if (url === undefined) return;
    await updateSetting('endpointUrl', url.trim());
  }
  const entered = await vscode.window.showInputBox({
    title: 'Collab: model',
    value: pick.kind_ === 'llamacpp' && settings.backend !== 'llamacpp' ? 'smollm2-135m-instruct' : model,
    prompt:
      pick.kind_ === 'openai'
        ? 'The model name the endpoint serves (Collab: Select Model lists them)'
        : pick.kind_ === 'llamacpp'
          ? 'A .gguf file (or a folder with one), or smollm2-135m-instruct (embedded)'
          : 'A hub id, a local folder, an agents folder, or smollm2-135m-instruct',
    ignoreFocusOut: true,
  });
  if (entered === undefined) return;
  model = entered.trim() || model;
  await updateSetting('model', model);
  await updateSetting('backend', pick.kind_);

  if (pick.kind_ === 'openai' && !(await secrets.getApiKey())) {
    const a = await vscode.window.showInformationMessage('Collab: does the endpoint need an API key?', 'Set API Key', 'No Key Needed');
    if (a === 'Set API Key') await setApiKey(secrets);
  }
}

export async function setApiKey(secrets: Secrets): Promise<void> {
  const has = (await secrets.getApiKey()) !== null;
  const key = await vscode.window.showInputBox({
    title: 'Collab: API key for the OpenAI-compatible endpoint',
    prompt: has
      ? 'A key is stored. Enter a new one, or leave empty to remove it. It is kept in VS Code\'s secret storage.'
      : 'Kept in VS Code\'s secret storage, never in settings.json.',
    password: true,
    ignoreFocusOut: true,
  });
  if (key === undefined) return;
  await secrets.setApiKey(key.trim() || null);
  void vscode.window.showInformationMessage(key.trim() ? 'Collab: API key stored.' : 'Collab: API key removed.');
}

/** Lets the user pick the server's interpreter and writes collab.server.pythonPath. */
export async function chooseServerInterpreter(python: PythonExtension): Promise<boolean> {
  type Item = vscode.QuickPickItem & { id: 'enter' | 'browse' | 'python' | 'clear' };
  const items: Item[] = [
    { id: 'enter', label: '$(edit) Enter the interpreter path...' },
    { id: 'browse', label: '$(folder-opened) Browse...' },
  ];
  const active = await python.activeInterpreter();
  if (active) items.unshift({ id: 'python', label: `$(star) ${active}`, description: "the Python extension's active interpreter" });
  items.push({ id: 'clear', label: '$(discard) Use the default', description: 'clear collab.server.pythonPath' });
  const pick = await vscode.window.showQuickPick(items, {
    title: "Collab: the server's Python interpreter",
    placeHolder: 'An interpreter with the collabcoder package installed',
  });
  if (!pick) return false;
  let value: string | undefined;
  if (pick.id === 'python') value = active ?? undefined;
  else if (pick.id === 'clear') value = '';
  else if (pick.id === 'enter') {
    value = await vscode.window.showInputBox({ title: 'Interpreter path', prompt: 'e.g. /home/me/venvs/collab/bin/python', ignoreFocusOut: true });
  } else {
    const uris = await vscode.window.showOpenDialog({ canSelectMany: false, openLabel: 'Use this interpreter', title: 'Python interpreter' });
    value = uris?.[0]?.fsPath;
  }
  if (value === undefined) return false;
  await updateSetting('server.pythonPath', value.trim());
  return true;
}
