// The language server's lifecycle (interpreter, install offer, start, restart, crash handling)
// and the requests the UI makes to it.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import {
  CloseAction,
  ErrorAction,
  ExecuteCommandRequest,
  LanguageClient,
  type ResponseError,
  State,
  WorkDoneProgress,
  type CloseHandlerResult,
  type ErrorHandlerResult,
  type LanguageClientOptions,
  type ServerOptions,
  TransportKind,
} from 'vscode-languageclient/node';
import { SECTION, documentSelector, readSettings, toInitializationOptions, toServerSettings, type CollabSettings } from './config';
import { installPrivateServer, privateVenvPython } from './installer';
import { expandPath, interpreterCandidates, resolveInterpreter, serverLaunch } from './launch';
import { probeInterpreter } from './processes';
import {
  NOTIFICATIONS,
  SERVER_COMMANDS,
  type IterationNotification,
  type RunFeedbackArgs,
  type RunFeedbackResult,
  type StatsResult,
  type StatusNotification,
} from './protocol';
import type { PythonExtension } from './pythonExtension';
import type { Secrets } from './secrets';
import type { Store } from './store';

const CRASH_WINDOW_MS = 3 * 60_000;
const MAX_CRASHES = 4;

export function readCollabSettings(scope?: vscode.ConfigurationScope): { settings: CollabSettings; problems: string[] } {
  const cfg = vscode.workspace.getConfiguration(SECTION, scope);
  return readSettings((key) => cfg.get(key));
}

export class ServerManager implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private starting: Promise<boolean> | undefined;
  private crashes: number[] = [];
  private activeInterpreter: string | null = null;
  private readonly disposables: vscode.Disposable[] = [];
  private clientDisposables: vscode.Disposable[] = [];
  private reportedProblems = new Set<string>();

  constructor(
    private readonly ctx: vscode.ExtensionContext,
    private readonly log: vscode.LogOutputChannel,
    private readonly store: Store,
    private readonly secrets: Secrets,
    private readonly python: PythonExtension,
  ) {
    this.disposables.push(
      secrets.onDidChange((key) => void this.sendApiKey(key)),
      python.onDidChangeInterpreter(() => void this.onInterpreterChanged()),
    );
  }

  get running(): boolean {
    return this.client?.state === State.Running;
  }

  get languageClient(): LanguageClient | undefined {
    return this.client;
  }

  /** Starts the server unless it runs or is starting; true when it runs afterwards. */
  ensureStarted(): Promise<boolean> {
    if (this.running) return Promise.resolve(true);
    if (!this.starting) {
      this.starting = this.start().finally(() => {
        this.starting = undefined;
      });
    }
    return this.starting;
  }

  async restart(): Promise<boolean> {
    if (this.starting) await this.starting;
    await this.stop();
    this.crashes = [];
    return this.ensureStarted();
  }

  async stop(): Promise<void> {
    await this.disposeClient();
    this.store.dispatch({ type: 'connection', connection: 'stopped' });
  }

  /** Stops and drops the current client (a failed one too) without changing the shown state. */
  private async disposeClient(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    for (const d of this.clientDisposables) d.dispose();
    this.clientDisposables = [];
    if (client) {
      try {
        if (client.needsStop()) await client.stop(5000);
      } catch (e) {
        this.log.warn(`Stopping the server: ${String(e)}`);
      }
      await client.dispose().catch(() => undefined);
    }
  }

  private reportProblems(problems: string[]): void {
    for (const p of problems) {
      if (this.reportedProblems.has(p)) continue;
      this.reportedProblems.add(p);
      this.log.warn(p);
      void vscode.window.showWarningMessage(`Collab Coder: ${p}`, 'Open Settings').then((a) => {
        if (a) void vscode.commands.executeCommand('workbench.action.openSettings', '@ext:collabcoder.collab-coder');
      });
    }
  }

  /** Finds the interpreter that runs the server, offering the private environment if needed. */
  private async resolveServerPython(settings: CollabSettings): Promise<string | null> {
    const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
    const configured = expandPath(settings.serverPythonPath, { home: os.homedir(), workspaceFolder: folder });
    const fromPythonExt = configured ? null : await this.python.activeInterpreter();
    const candidates = interpreterCandidates({ configured, pythonExtension: fromPythonExt, privateVenv: privateVenvPython(this.ctx) });
    const probes = await Promise.all(candidates.map((c) => probeInterpreter(c.python)));
    candidates.forEach((c, i) => this.log.info(`Interpreter candidate (${c.source}) ${c.python}: ${probes[i]!.ok ? 'usable' : probes[i]!.reason}`));
    const base = process.platform === 'win32' ? 'python' : 'python3';
    const res = resolveInterpreter(candidates, probes, base);
    if (res.kind === 'use') return res.candidate.python;

    // The notifications below are not awaited: start() must not hang on a user who never
    // answers. Their actions restart the server themselves (a settings change does it too).
    if (res.kind === 'configuredBroken') {
      const msg = `Collab Coder cannot start its server: collab.server.pythonPath: ${res.reason}.`;
      this.log.error(msg);
      this.store.dispatch({ type: 'clientError', message: msg });
      void vscode.window.showErrorMessage(msg, 'Choose Interpreter', 'Open Settings', 'Show Logs').then(async (action) => {
        if (action === 'Choose Interpreter') await vscode.commands.executeCommand('collabCoder.chooseServerInterpreter');
        else if (action === 'Open Settings') await vscode.commands.executeCommand('workbench.action.openSettings', 'collab.server.pythonPath');
        else if (action === 'Show Logs') this.log.show();
      });
      return null;
    }

    const why = res.reasons.length > 0 ? ` (${res.reasons.join('; ')})` : '';
    const msg = `Collab Coder needs its language server, the Python package collabcoder, which is not installed${why}. Install it into a private environment?`;
    this.log.warn(msg);
    this.store.dispatch({ type: 'clientError', message: 'the language server is not installed' });
    void vscode.window.showWarningMessage(msg, 'Install', 'Choose Interpreter', 'Show Logs').then(async (action) => {
      if (action === 'Install') {
        if (await this.install(res.basePython ?? base)) await this.restart();
      } else if (action === 'Choose Interpreter') await vscode.commands.executeCommand('collabCoder.chooseServerInterpreter');
      else if (action === 'Show Logs') this.log.show();
    });
    return null;
  }

  /** Installs the private environment; returns its interpreter or null (with the error shown). */
  async install(basePython?: string): Promise<string | null> {
    const base = basePython ?? (await this.python.activeInterpreter()) ?? (process.platform === 'win32' ? 'python' : 'python3');
    const outcome = await installPrivateServer(this.ctx, base, this.log);
    if (outcome.ok) {
      void vscode.window.showInformationMessage('Collab Coder: the server is installed.');
      return outcome.python;
    }
    if (outcome.cancelled) return null;
    const msg = `Collab Coder could not install its server: ${outcome.message}`;
    this.log.error(msg);
    this.store.dispatch({ type: 'clientError', message: msg });
    void vscode.window.showErrorMessage(msg, 'Show Logs', 'Choose Interpreter').then(async (action) => {
      if (action === 'Show Logs') this.log.show();
      else if (action === 'Choose Interpreter') await vscode.commands.executeCommand('collabCoder.chooseServerInterpreter');
    });
    return null;
  }

  private async start(): Promise<boolean> {
    await this.disposeClient(); // a client left from a failed start
    const { settings, problems } = readCollabSettings();
    this.reportProblems(problems);
    this.store.dispatch({ type: 'connection', connection: 'starting', serverPython: null });
    this.store.dispatch({ type: 'inlineEnabled', enabled: settings.inlineCompletionsEnabled });

    const python = await this.resolveServerPython(settings);
    if (!python) {
      this.store.dispatch({ type: 'connection', connection: 'failed' });
      return false;
    }
    this.activeInterpreter = settings.pythonPath ? null : await this.python.activeInterpreter();
    const apiKey = await this.secrets.getApiKey();

    // The full log goes to a file in the extension's log folder; the server mirrors INFO and up
    // into this output channel (window/logMessage), and stderr is left for crashes.
    const logFile = path.join(this.ctx.logUri.fsPath, 'server.log');
    fs.mkdirSync(this.ctx.logUri.fsPath, { recursive: true });
    const launch = serverLaunch(python, { logLevel: settings.serverLogLevel, logFile, baseEnv: process.env });
    this.log.info(`Starting the server: ${[launch.command, ...launch.args].join(' ')}`);
    const serverOptions: ServerOptions = {
      command: launch.command,
      args: launch.args,
      transport: TransportKind.stdio,
      options: { env: launch.env, cwd: vscode.workspace.workspaceFolders?.[0]?.uri.fsPath },
    };
    const clientOptions: LanguageClientOptions = {
      documentSelector: documentSelector(settings.enabledLanguages),
      outputChannel: this.log,
      synchronize: { configurationSection: SECTION },
      initializationOptions: toInitializationOptions(settings, apiKey, this.activeInterpreter),
      errorHandler: {
        error: (error, _message, count): ErrorHandlerResult => {
          this.log.error(`Connection error: ${error.message}`);
          return { action: (count ?? 0) <= 3 ? ErrorAction.Continue : ErrorAction.Shutdown, handled: true };
        },
        closed: (): CloseHandlerResult => this.onClosed(),
      },
      initializationFailedHandler: (error) => {
        this.log.error(`The server failed to initialize: ${String(error)}`);
        return false;
      },
      middleware: {
        provideInlineCompletionItems: (document, position, context, token, next) => {
          const { settings: s } = readCollabSettings(document);
          if (!s.inlineCompletionsEnabled || !s.enabledLanguages.includes(document.languageId)) return null;
          return next(document, position, context, token);
        },
        workspace: {
          configuration: async (params, token, next) => {
            const answer: unknown = await next(params, token);
            if (!Array.isArray(answer)) return answer as ResponseError<void>;
            const answers = answer as unknown[];
            return params.items.map((item, i) => {
              if (item.section !== SECTION) return answers[i];
              const scope = item.scopeUri ? vscode.Uri.parse(item.scopeUri) : undefined;
              const { settings: s, problems: p } = readCollabSettings(scope);
              this.reportProblems(p);
              return toServerSettings(s, this.activeInterpreter);
            });
          },
        },
      },
    };

    const client = new LanguageClient('collabCoder', 'Collab Coder', serverOptions, clientOptions);
    this.client = client;
    this.clientDisposables.push(
      client.onDidChangeState((e) => {
        if (this.client !== client) return;
        if (e.newState === State.Running) this.store.dispatch({ type: 'connection', connection: 'running', serverPython: python });
        else if (e.newState === State.Starting) this.store.dispatch({ type: 'connection', connection: 'starting' });
      }),
      client.onNotification(NOTIFICATIONS.status, (status: StatusNotification) => this.store.dispatch({ type: 'status', status })),
      client.onNotification(NOTIFICATIONS.iteration, (iteration: IterationNotification) => this.store.dispatch({ type: 'iteration', iteration })),
    );
    try {
      await client.start();
    } catch (e) {
      if (this.client !== client) return false;
      const msg = `Collab Coder's server did not start with ${python}: ${e instanceof Error ? e.message : String(e)}`;
      this.log.error(msg);
      this.store.dispatch({ type: 'clientError', message: msg });
      this.store.dispatch({ type: 'connection', connection: 'failed', serverPython: python });
      void this.showStartError(msg);
      return false;
    }
    this.store.dispatch({ type: 'connection', connection: 'running', serverPython: python });
    this.log.info('The server is running.');
    void this.refreshStats();
    return true;
  }

  private async showStartError(msg: string): Promise<void> {
    const action = await vscode.window.showErrorMessage(msg, 'Show Logs', 'Choose Interpreter', 'Restart');
    if (action === 'Show Logs') this.log.show();
    else if (action === 'Choose Interpreter') await vscode.commands.executeCommand('collabCoder.chooseServerInterpreter');
    else if (action === 'Restart') await this.restart();
  }

  private onClosed(): CloseHandlerResult {
    const now = Date.now();
    this.crashes = [...this.crashes.filter((t) => now - t < CRASH_WINDOW_MS), now];
    if (this.crashes.length <= MAX_CRASHES) {
      this.log.warn(`The server stopped; restarting (${this.crashes.length}/${MAX_CRASHES} in 3 minutes).`);
      this.store.dispatch({ type: 'connection', connection: 'starting' });
      return { action: CloseAction.Restart, handled: true };
    }
    const msg = `Collab Coder's server stopped ${this.crashes.length} times in 3 minutes; it is not restarted again.`;
    this.log.error(msg);
    this.store.dispatch({ type: 'clientError', message: msg });
    this.store.dispatch({ type: 'connection', connection: 'failed' });
    void this.showStartError(msg);
    return { action: CloseAction.DoNotRestart, handled: true };
  }

  private async onInterpreterChanged(): Promise<void> {
    const { settings } = readCollabSettings();
    if (!settings.pythonPath) {
      this.activeInterpreter = await this.python.activeInterpreter();
      this.notifyConfigurationChanged();
    }
    if (!settings.serverPythonPath && !this.running) void this.ensureStarted();
  }

  /** Makes the server read `workspace/configuration` again. */
  notifyConfigurationChanged(): void {
    if (!this.client || !this.running) return;
    void this.client.sendNotification('workspace/didChangeConfiguration', { settings: null }).catch(() => undefined);
  }

  private async sendApiKey(key: string | null): Promise<void> {
    if (!this.client || !this.running) return;
    try {
      await this.client.sendNotification(NOTIFICATIONS.setApiKey, { apiKey: key });
      this.log.info(key ? 'Sent the new API key to the server.' : 'Told the server the API key was removed.');
    } catch (e) {
      this.log.error(`Could not send the API key to the server: ${String(e)}`);
    }
  }

  private async executeCommand<T>(command: string, args: unknown[], token?: vscode.CancellationToken, workDoneToken?: string): Promise<T> {
    if (!(await this.ensureStarted()) || !this.client) throw new Error('the Collab Coder server is not running');
    return this.client.sendRequest(ExecuteCommandRequest.type, { command, arguments: args, workDoneToken }, token) as Promise<T>;
  }

  /** Tells the server a status-panel run's candidate was applied (counted once per run). */
  async acceptPanelRun(runToken: string): Promise<void> {
    if (!this.running) return;
    try {
      await this.executeCommand<null>(SERVER_COMMANDS.acceptCompletion, [{ run: runToken }]);
    } catch (e) {
      this.log.warn(`collab.acceptCompletion failed: ${String(e)}`);
    }
  }

  async refreshStats(): Promise<void> {
    if (!this.running) return;
    try {
      const stats = await this.executeCommand<StatsResult | null>(SERVER_COMMANDS.getStats, []);
      if (stats) this.store.dispatch({ type: 'stats', stats });
    } catch (e) {
      this.log.warn(`collab.getStats failed: ${String(e)}`);
    }
  }

  /**
   * Runs `collab.runFeedbackIterations`; iterations stream in by `collab/iteration` (to the
   * store) and progress by `$/progress` on the same token.
   */
  async runFeedbackIterations(
    args: RunFeedbackArgs,
    token: vscode.CancellationToken,
    onProgress: (message: string) => void,
  ): Promise<RunFeedbackResult> {
    if (!(await this.ensureStarted()) || !this.client) throw new Error('the Collab Coder server is not running');
    const client = this.client;
    const sub = client.onProgress(WorkDoneProgress.type, args.token, (value) => {
      if (value.kind !== 'end' && value.message) onProgress(value.message);
    });
    try {
      return await this.executeCommand<RunFeedbackResult>(SERVER_COMMANDS.runFeedbackIterations, [args], token, args.token);
    } finally {
      sub.dispose();
    }
  }

  dispose(): void {
    for (const d of this.disposables) d.dispose();
    void this.stop();
  }
}
