// The Python extension (ms-python.python), optional: its active interpreter is the default for
// the analyzers and a candidate for running the server.

import * as vscode from 'vscode';

const PYTHON_EXTENSION_ID = 'ms-python.python';

interface EnvironmentPath {
  id: string;
  path: string;
}

interface ResolvedEnvironment {
  executable: { uri?: vscode.Uri };
}

/** The parts of the Python extension's API used here (new `environments` API, old `settings`). */
interface PythonApi {
  environments?: {
    getActiveEnvironmentPath(resource?: vscode.Uri): EnvironmentPath;
    resolveEnvironment(env: EnvironmentPath | string): Promise<ResolvedEnvironment | undefined>;
    onDidChangeActiveEnvironmentPath: vscode.Event<unknown>;
  };
  settings?: {
    getExecutionDetails(resource?: vscode.Uri): { execCommand: string[] | undefined };
    onDidChangeExecutionDetails?: vscode.Event<unknown>;
  };
}

export class PythonExtension implements vscode.Disposable {
  private api: PythonApi | null | undefined;
  private readonly changed = new vscode.EventEmitter<void>();
  private readonly disposables: vscode.Disposable[] = [this.changed];
  /** Fires when the user picks another interpreter in the Python extension. */
  readonly onDidChangeInterpreter = this.changed.event;

  constructor(private readonly log: vscode.LogOutputChannel) {}

  get installed(): boolean {
    return vscode.extensions.getExtension(PYTHON_EXTENSION_ID) !== undefined;
  }

  private async getApi(): Promise<PythonApi | null> {
    if (this.api !== undefined) return this.api;
    const ext = vscode.extensions.getExtension<PythonApi>(PYTHON_EXTENSION_ID);
    if (!ext) {
      this.api = null;
      return null;
    }
    try {
      const api = ext.isActive ? ext.exports : await ext.activate();
      this.api = api ?? null;
      const ev = api?.environments?.onDidChangeActiveEnvironmentPath ?? api?.settings?.onDidChangeExecutionDetails;
      if (ev) this.disposables.push(ev(() => this.changed.fire()));
    } catch (e) {
      this.log.warn(`The Python extension's API is not available: ${String(e)}`);
      this.api = null;
    }
    return this.api;
  }

  /** The active interpreter's executable for a resource, or null when unknown. */
  async activeInterpreter(resource?: vscode.Uri): Promise<string | null> {
    const api = await this.getApi();
    if (!api) return null;
    try {
      if (api.environments) {
        const envPath = api.environments.getActiveEnvironmentPath(resource);
        const env = await api.environments.resolveEnvironment(envPath);
        const exe = env?.executable.uri?.fsPath;
        if (exe) return exe;
      }
      const cmd = api.settings?.getExecutionDetails(resource).execCommand;
      if (cmd && cmd.length === 1 && cmd[0]) return cmd[0];
    } catch (e) {
      this.log.warn(`Could not read the Python extension's active interpreter: ${String(e)}`);
    }
    return null;
  }

  /** Opens the Python extension's interpreter picker; false when it is not installed. */
  async selectInterpreter(): Promise<boolean> {
    if (!this.installed) return false;
    await vscode.commands.executeCommand('python.setInterpreter');
    return true;
  }

  dispose(): void {
    for (const d of this.disposables) d.dispose();
  }
}
