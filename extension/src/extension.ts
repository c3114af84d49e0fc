// Entry point: wires the server, the status bar, the panel and the commands together.

import * as vscode from 'vscode';
import { chooseServerInterpreter, selectBackend, setApiKey, toggleInlineCompletions } from './commands';
import { needsRestart, SECTION } from './config';
import { FeedbackRuns, PANEL_VIEW_ID } from './feedback';
import { PanelProvider, type PanelMessage } from './panel';
import { PythonExtension } from './pythonExtension';
import { selectModel } from './selectModel';
import { Secrets } from './secrets';
import { readCollabSettings, ServerManager } from './server';
import { statusBarView } from './statusFormat';
import { Store } from './store';

let manager: ServerManager | undefined;

export function activate(ctx: vscode.ExtensionContext): void {
  const log = vscode.window.createOutputChannel('Collab Coder', { log: true });
  const store = new Store();
  const secrets = new Secrets(ctx.secrets);
  const python = new PythonExtension(log);
  const server = new ServerManager(ctx, log, store, secrets, python);
  manager = server;
  const runs = new FeedbackRuns(server, store, log);
  ctx.subscriptions.push(log, secrets, python, server, runs);

  // Status bar: state, backend/model, last latency; a click opens the panel.
  const item = vscode.window.createStatusBarItem('collab.status', vscode.StatusBarAlignment.Right, 100);
  item.name = 'Collab Coder';
  item.command = 'collabCoder.showPanel';
  const paint = (): void => {
    const v = statusBarView(store.state);
    item.text = v.text;
    item.tooltip = v.tooltip;
    item.backgroundColor =
      v.severity === 'error'
        ? new vscode.ThemeColor('statusBarItem.errorBackground')
        : v.severity === 'warning'
          ? new vscode.ThemeColor('statusBarItem.warningBackground')
          : undefined;
    // Hidden until the server is wanted (a document it serves, a command): no item in
    // workspaces without Python.
    if (store.state.connection === 'stopped') item.hide();
    else item.show();
  };
  paint();
  ctx.subscriptions.push(item, store.subscribe(paint));

  const onPanelMessage = async (m: PanelMessage): Promise<void> => {
    switch (m.action) {
      case 'run':
        await runs.run();
        break;
      case 'accept':
        await runs.accept(m.node ?? 'best');
        break;
      case 'discard':
        runs.discard();
        break;
      case 'cancel':
        runs.cancel();
        break;
      case 'refresh':
        await server.refreshStats();
        break;
      case 'toggle':
        await toggleInlineCompletions();
        break;
      case 'logs':
        log.show();
        break;
      case 'ready':
        break;
    }
  };
  const panel = new PanelProvider(ctx.extensionUri, store, onPanelMessage, () => void server.refreshStats());
  ctx.subscriptions.push(panel, vscode.window.registerWebviewViewProvider(PANEL_VIEW_ID, panel, { webviewOptions: { retainContextWhenHidden: true } }));

  const register = (id: string, fn: (...args: unknown[]) => unknown): void => {
    ctx.subscriptions.push(vscode.commands.registerCommand(id, fn));
  };
  register('collabCoder.runFeedbackIterations', (n?: unknown) => runs.run(typeof n === 'number' ? n : undefined));
  register('collabCoder.toggleInlineCompletions', () => toggleInlineCompletions());
  register('collabCoder.showPanel', () => runs.showPanel(false));
  register('collabCoder.selectBackend', () => selectBackend(secrets));
  register('collabCoder.selectModel', () => selectModel(secrets));
  register('collabCoder.setApiKey', () => setApiKey(secrets));
  register('collabCoder.restartServer', () => server.restart());
  register('collabCoder.showLogs', () => log.show());
  register('collabCoder.installServer', async () => {
    if (await server.install()) await vscode.commands.executeCommand('collabCoder.restartServer');
  });
  // Changing collab.server.pythonPath restarts the server (see onDidChangeConfiguration below).
  register('collabCoder.chooseServerInterpreter', () => chooseServerInterpreter(python));
  // Internal: accept the current run's candidate from tests or keybindings.
  register('collabCoder.acceptCandidate', (node?: unknown) => runs.accept(typeof node === 'string' ? node : 'best'));
  register('collabCoder.discardRun', () => runs.discard());

  ctx.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration(async (e) => {
      if (!e.affectsConfiguration(SECTION)) return;
      const { settings } = readCollabSettings();
      store.dispatch({ type: 'inlineEnabled', enabled: settings.inlineCompletionsEnabled });
      if (needsRestart((k) => e.affectsConfiguration(k)) && (server.running || store.state.connection === 'failed')) {
        log.info('A setting that needs a new server process changed; restarting the server.');
        await server.restart();
      }
      // Everything else reaches the running server through didChangeConfiguration
      // (synchronize.configurationSection), which makes it ask workspace/configuration again.
    }),
  );

  // Start the server when a document it serves is open; otherwise when one opens.
  const serves = (doc: vscode.TextDocument): boolean => {
    const { settings } = readCollabSettings(doc);
    return (doc.uri.scheme === 'file' || doc.uri.scheme === 'untitled') && settings.enabledLanguages.includes(doc.languageId);
  };
  const maybeStart = (doc: vscode.TextDocument): void => {
    if (!server.running && store.state.connection !== 'failed' && store.state.connection !== 'starting' && serves(doc)) {
      void server.ensureStarted();
    }
  };
  ctx.subscriptions.push(vscode.workspace.onDidOpenTextDocument(maybeStart));
  vscode.workspace.textDocuments.forEach(maybeStart);
}

export async function deactivate(): Promise<void> {
  await manager?.stop();
  manager = undefined;
}
