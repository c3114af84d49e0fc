// The private environment: a venv in the extension's global storage with the server wheel that
// ships inside the .vsix, installed under a progress notification.

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { installHint, installPlan, pickWheel, venvPython } from './launch';
import { runProcess } from './processes';

export function privateVenvDir(ctx: vscode.ExtensionContext): string {
  return path.join(ctx.globalStorageUri.fsPath, 'server-venv');
}

/** The private environment's interpreter when it exists. */
export function privateVenvPython(ctx: vscode.ExtensionContext): string | null {
  const py = venvPython(privateVenvDir(ctx), process.platform);
  return fs.existsSync(py) ? py : null;
}

/** The server wheel bundled in the extension, or null (a development build without it). */
export function bundledWheel(ctx: vscode.ExtensionContext): string | null {
  const dir = path.join(ctx.extensionUri.fsPath, 'extension', 'dist', 'wheels');
  let files: string[];
  try {
    files = fs.readdirSync(dir);
  } catch {
    return null;
  }
  const w = pickWheel(files);
  return w ? path.join(dir, w) : null;
}

export type InstallOutcome = { ok: true; python: string } | { ok: false; cancelled: boolean; message: string };

/** Builds the private environment from `basePython`; the steps' output goes to the log. */
export async function installPrivateServer(
  ctx: vscode.ExtensionContext,
  basePython: string,
  log: vscode.LogOutputChannel,
): Promise<InstallOutcome> {
  const wheel = bundledWheel(ctx);
  if (!wheel) {
    return {
      ok: false,
      cancelled: false,
      message: 'this build of the extension has no bundled server wheel (extension/dist/wheels); build it with `npm run package`',
    };
  }
  const venvDir = privateVenvDir(ctx);
  fs.mkdirSync(path.dirname(venvDir), { recursive: true });
  const steps = installPlan({ basePython, venvDir, wheel, platform: process.platform, arch: process.arch });
  log.info(`Installing the Collab Coder server into ${venvDir} from ${wheel}`);
  return vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: 'Collab Coder: installing the server', cancellable: true },
    async (progress, token) => {
      const abort = new AbortController();
      const sub = token.onCancellationRequested(() => abort.abort());
      try {
        for (const [i, step] of steps.entries()) {
          progress.report({ message: `${step.title} (${i + 1}/${steps.length})`, increment: i === 0 ? 0 : 100 / steps.length });
          log.info(`$ ${[step.command, ...step.args].join(' ')}`);
          if (step.env) log.info(`  with ${Object.entries(step.env).map(([k, v]) => `${k}="${v}"`).join(' ')}`);
          const out = await runProcess(step.command, step.args, {
            env: step.env ? { ...process.env, ...step.env } : undefined,
            signal: abort.signal,
            onOutput: (t) => {
              for (const line of t.split(/\r?\n/)) if (line.trim()) log.info(line);
            },
          });
          if (out.error === 'cancelled') return { ok: false, cancelled: true, message: 'installation cancelled' };
          if (out.code !== 0) {
            const last = (out.error ?? out.stderr.trim().split('\n').pop()) || `exit code ${out.code}`;
            return { ok: false, cancelled: false, message: `${step.title} failed: ${last}${installHint(out.stdout + out.stderr)}` };
          }
        }
        return { ok: true, python: venvPython(venvDir, process.platform) } as const;
      } finally {
        sub.dispose();
      }
    },
  );
}
