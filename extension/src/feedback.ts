// "Run Feedback Iterations": runs the server's loop at the cursor, streams it into the panel,
// and applies the candidate the user accepts.

import * as path from 'node:path';
import * as vscode from 'vscode';
import { candidateFor, normalizeResult } from './panelState';
import type { TextEditDto } from './protocol';
import { readCollabSettings, type ServerManager } from './server';
import type { Store } from './store';

export const PANEL_VIEW_ID = 'collab.panel';

interface ActiveRun {
  token: string;
  cts: vscode.CancellationTokenSource;
  uri: vscode.Uri;
  version: number;
}

export class FeedbackRuns implements vscode.Disposable {
  private active: ActiveRun | undefined;
  /** Document version each finished run was computed on, by token. */
  private readonly versions = new Map<string, { uri: string; version: number }>();

  constructor(
    private readonly server: ServerManager,
    private readonly store: Store,
    private readonly log: vscode.LogOutputChannel,
  ) {}

  async showPanel(preserveFocus = true): Promise<void> {
    await vscode.commands.executeCommand(`${PANEL_VIEW_ID}.focus`, { preserveFocus });
  }

  /** Runs the loop at the active editor's cursor. */
  async run(iterations?: number): Promise<void> {
    const editor = vscode.window.activeTextEditor ?? vscode.window.visibleTextEditors[0];
    if (!editor) {
      void vscode.window.showWarningMessage('Collab: open a file and put the cursor where code should go, then run the feedback iterations.');
      return;
    }
    const doc = editor.document;
    const { settings } = readCollabSettings(doc);
    if (!settings.enabledLanguages.includes(doc.languageId)) {
      void vscode.window.showWarningMessage(
        `Collab: ${doc.languageId} is not in collab.enabledLanguages (${settings.enabledLanguages.join(', ') || 'none'}).`,
      );
      return;
    }
    this.cancel();
    const n = iterations ?? settings.maxIterations;
    const token = `collab-run-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    const pos = editor.selection.active;
    const cts = new vscode.CancellationTokenSource();
    const run: ActiveRun = { token, cts, uri: doc.uri, version: doc.version };
    this.active = run;
    this.store.dispatch({
      type: 'runStarted',
      token,
      uri: doc.uri.toString(),
      label: path.basename(doc.uri.path) || doc.uri.toString(),
      line: pos.line,
      character: pos.character,
      iterations: n,
      now: Date.now(),
    });
    await this.showPanel();
    try {
      const result = await vscode.window.withProgress(
        { location: { viewId: PANEL_VIEW_ID }, title: 'Collab: feedback iterations' },
        () =>
          this.server.runFeedbackIterations(
            { uri: doc.uri.toString(), position: { line: pos.line, character: pos.character }, iterations: n, token },
            cts.token,
            (message) => this.log.debug(`[${token}] ${message}`),
          ),
      );
      this.versions.set(token, { uri: doc.uri.toString(), version: run.version });
      this.store.dispatch({ type: 'runFinished', result: normalizeResult(result, token), now: Date.now() });
      void this.server.refreshStats();
    } catch (e) {
      if (cts.token.isCancellationRequested) {
        this.store.dispatch({ type: 'runCancelled', token, now: Date.now() });
      } else {
        const msg = `Feedback iterations failed: ${errorMessage(e)}`;
        this.log.error(msg);
        this.store.dispatch({ type: 'runFailed', token, error: msg, now: Date.now() });
        void vscode.window.showErrorMessage(`Collab: ${msg}`, 'Show Logs').then((a) => {
          if (a) this.log.show();
        });
      }
    } finally {
      if (this.active === run) this.active = undefined;
      cts.dispose();
    }
  }

  cancel(): void {
    this.active?.cts.cancel();
  }

  /** Applies a candidate ('best' = the run's choice) of the finished run as an edit. */
  async accept(nodeId: string): Promise<boolean> {
    const run = this.store.state.run;
    if (!run || run.phase !== 'done' || !run.result) return false;
    const cand = candidateFor(run.result, nodeId);
    const edit: TextEditDto | null | undefined = nodeId === 'best' ? (run.result.edit ?? cand?.edit) : cand?.edit;
    if (!edit) {
      void vscode.window.showWarningMessage('Collab: that candidate has no edit to apply.');
      return false;
    }
    const uri = vscode.Uri.parse(edit.uri);
    const doc = await vscode.workspace.openTextDocument(uri);
    const seen = this.versions.get(run.token);
    if (seen && seen.uri === doc.uri.toString() && seen.version !== doc.version) {
      const choice = await vscode.window.showWarningMessage(
        'Collab: the document changed since the run; the edit may land in the wrong place.',
        { modal: true },
        'Apply Anyway',
      );
      if (choice !== 'Apply Anyway') return false;
    }
    const range = new vscode.Range(edit.range.start.line, edit.range.start.character, edit.range.end.line, edit.range.end.character);
    const we = new vscode.WorkspaceEdit();
    we.replace(uri, range, edit.newText);
    const ok = await vscode.workspace.applyEdit(we);
    if (!ok) {
      void vscode.window.showErrorMessage('Collab: VS Code refused the edit (is the document read-only?).');
      return false;
    }
    const acceptedId = nodeId === 'best' ? (cand?.nodeId ?? 'best') : nodeId;
    this.store.dispatch({ type: 'accepted', token: run.token, nodeId: acceptedId });
    // Put the cursor after the inserted text.
    const editor = await vscode.window.showTextDocument(doc, { preserveFocus: false });
    const end = endOfInsertion(range.start, edit.newText);
    editor.selection = new vscode.Selection(end, end);
    editor.revealRange(new vscode.Range(range.start, end));
    void this.server.acceptPanelRun(run.token).then(() => this.server.refreshStats());
    return true;
  }

  discard(): void {
    const run = this.store.state.run;
    if (run) this.store.dispatch({ type: 'discarded', token: run.token });
  }

  dispose(): void {
    this.cancel();
  }
}

function endOfInsertion(start: vscode.Position, text: string): vscode.Position {
  const lines = text.split('\n');
  if (lines.length === 1) return start.translate(0, text.length);
  return new vscode.Position(start.line + lines.length - 1, lines[lines.length - 1]!.length);
}

function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  if (typeof e === 'object' && e !== null && 'message' in e) return String(e.message);
  return String(e);
}
