// The status panel: a webview view in the panel area. The extension renders HTML from the state
// (panelView.ts) and posts it; the webview script only swaps it in and reports button clicks.

import * as crypto from 'node:crypto';
import * as vscode from 'vscode';
import { renderPanel } from './panelView';
import type { Store } from './store';

/** What the webview's buttons send. */
export interface PanelMessage {
  action: 'ready' | 'run' | 'accept' | 'discard' | 'cancel' | 'refresh' | 'toggle' | 'logs';
  node?: string;
}

export type PanelHandler = (msg: PanelMessage) => void | Promise<void>;

export class PanelProvider implements vscode.WebviewViewProvider, vscode.Disposable {
  private view: vscode.WebviewView | undefined;
  private readonly sub: vscode.Disposable;
  private pending = false;

  constructor(
    private readonly extensionUri: vscode.Uri,
    private readonly store: Store,
    private readonly onMessage: PanelHandler,
    /** Called when the panel becomes visible (to refresh the stats). */
    private readonly onVisible: () => void,
  ) {
    this.sub = store.subscribe(() => this.scheduleRender());
  }

  resolveWebviewView(view: vscode.WebviewView): void {
    this.view = view;
    const media = vscode.Uri.joinPath(this.extensionUri, 'extension', 'media');
    const dist = vscode.Uri.joinPath(this.extensionUri, 'extension', 'dist');
    view.webview.options = { enableScripts: true, localResourceRoots: [media, dist] };
    view.webview.html = this.shell(view.webview, media, dist);
    view.webview.onDidReceiveMessage((m: PanelMessage) => {
      if (m.action === 'ready') this.render();
      else void this.onMessage(m);
    });
    view.onDidChangeVisibility(() => {
      if (view.visible) {
        this.render();
        this.onVisible();
      }
    });
    view.onDidDispose(() => {
      if (this.view === view) this.view = undefined;
    });
    this.onVisible();
  }

  /** Coalesces bursts of state changes (a run streams many) into one post per tick. */
  private scheduleRender(): void {
    if (this.pending) return;
    this.pending = true;
    setTimeout(() => {
      this.pending = false;
      this.render();
    }, 30);
  }

  private render(): void {
    const view = this.view;
    if (!view || !view.visible) return;
    void view.webview.postMessage({ type: 'render', html: renderPanel(this.store.state, Date.now()) });
  }

  private shell(webview: vscode.Webview, media: vscode.Uri, dist: vscode.Uri): string {
    const nonce = crypto.randomBytes(16).toString('base64');
    const css = webview.asWebviewUri(vscode.Uri.joinPath(media, 'panel.css'));
    const js = webview.asWebviewUri(vscode.Uri.joinPath(dist, 'webview.js'));
    const csp = [
      "default-src 'none'",
      `style-src ${webview.cspSource}`,
      `script-src 'nonce-${nonce}'`,
      `font-src ${webview.cspSource}`,
    ].join('; ');
    return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" href="${css.toString()}">
<title>Collab Coder</title>
</head>
<body>
<div id="root" data-testid="collab-panel"><p class="muted">Loading...</p></div>
<script nonce="${nonce}" src="${js.toString()}"></script>
</body>
</html>`;
  }

  dispose(): void {
    this.sub.dispose();
  }
}
