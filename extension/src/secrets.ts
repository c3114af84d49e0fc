// The API key for the `openai` backend, kept in VS Code's SecretStorage only: never in settings,
// never on a command line, never in a log.

import * as vscode from 'vscode';

export const API_KEY_SECRET = 'collab.apiKey';

export class Secrets implements vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<string | null>();
  /** Fires with the new key (null when removed), also for changes made in another window. */
  readonly onDidChange = this.changed.event;
  private readonly sub: vscode.Disposable;

  constructor(private readonly storage: vscode.SecretStorage) {
    this.sub = storage.onDidChange(async (e) => {
      if (e.key === API_KEY_SECRET) this.changed.fire(await this.getApiKey());
    });
  }

  async getApiKey(): Promise<string | null> {
    const key = await this.storage.get(API_KEY_SECRET);
    return key ? key : null;
  }

  async setApiKey(key: string | null): Promise<void> {
    if (key) await this.storage.store(API_KEY_SECRET, key);
    else await this.storage.delete(API_KEY_SECRET);
  }

  dispose(): void {
    this.sub.dispose();
    this.changed.dispose();
  }
}
