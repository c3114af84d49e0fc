// A real VS Code for end-to-end tests: code-server 4.100.3 (VS Code 1.100.3) with the built
// .vsix installed into private extension and user-data folders, driven by Playwright through
// Debian's Chromium, installed by extension/scripts/install-code-server.sh when missing.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { chromium, type Browser, type FrameLocator, type Page } from 'playwright-core';

export const REPO = path.resolve(__dirname, '..', '..');
export const ARTIFACTS = path.join(REPO, 'extension', 'e2e', 'artifacts');
const SETUP = path.join(REPO, 'extension', 'scripts', 'install-code-server.sh');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Flags headless Chromium needs here (root, no GPU, nothing phoning home). */
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
  '--disable-dev-shm-usage',
];

export function log(msg: string): void {
  const t = new Date().toISOString().slice(11, 23);
  process.stderr.write(`[e2e ${t}] ${msg}\n`);
}

/** code-server's executable: $CODE_SERVER, else the (idempotent) setup script's prefix. */
export function codeServerBin(): string {
  if (process.env.CODE_SERVER) return process.env.CODE_SERVER;
  const prefix = process.env.VSCODE_E2E_PREFIX ?? path.join(process.env.HOME ?? '/root', '.cache', 'vscode-e2e');
  const bin = path.join(prefix, 'node_modules', '.bin', 'code-server');
  if (fs.existsSync(path.join(prefix, '.installed-4.100.3')) && fs.existsSync(bin)) return bin;
  log(`installing code-server with ${SETUP} (once; several minutes)`);
  const r = spawnSync('bash', [SETUP, prefix], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) throw new Error(`${SETUP} failed with exit code ${r.status}`);
  return bin;
}

/** The packaged extension: $COLLAB_VSIX, else collab-coder.vsix at the repository root. */
export function vsixPath(): string {
  const p = process.env.COLLAB_VSIX ?? path.join(REPO, 'collab-coder.vsix');
  if (!fs.existsSync(p)) throw new Error(`${p} does not exist: build it first with \`npm run package\``);
  return p;
}

/** The interpreter that runs the server in the test: $COLLAB_E2E_PYTHON, else the repo's .venv. */
export function serverPython(): string {
  const p = process.env.COLLAB_E2E_PYTHON ?? path.join(REPO, '.venv', 'bin', 'python');
  if (!fs.existsSync(p)) throw new Error(`${p} does not exist: set COLLAB_E2E_PYTHON or run \`make setup\``);
  return p;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export interface Editor {
  url: string;
  workspace: string;
  userDataDir: string;
  page: Page;
  browser: Browser;
  server: ChildProcess;
  close(): Promise<void>;
}

export interface EditorOptions {
  /** Root for this run's folders (removed by close() unless KEEP_E2E_TMP is set). */
  tmp: string;
  /** User settings (workspace trust and noise are handled here). */
  settings: Record<string, unknown>;
  /** Files of the workspace, relative path -> content. */
  files: Record<string, string>;
  env?: Record<string, string>;
  /** Prefix of this editor's log files in the artifacts folder. */
  artifactPrefix?: string;
}

function writeJson(file: string, data: unknown): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(data, null, 2));
}

/** Settings that keep the workbench quiet and predictable for a test. */
export const QUIET_SETTINGS: Record<string, unknown> = {
  'security.workspace.trust.enabled': false,
  'workbench.startupEditor': 'none',
  'workbench.tips.enabled': false,
  'workbench.welcomePage.walkthroughs.openOnInstall': false,
  'workbench.enableExperiments': false,
  'telemetry.telemetryLevel': 'off',
  'update.mode': 'none',
  'extensions.autoUpdate': false,
  'extensions.autoCheckUpdates': false,
  'extensions.ignoreRecommendations': true,
  'chat.commandCenter.enabled': false,
  'editor.minimap.enabled': false,
  // Word-based suggestions would open the suggest widget, which hides ghost text.
  'editor.quickSuggestions': { other: false, comments: false, strings: false },
  'editor.suggestOnTriggerCharacters': false,
  'editor.wordBasedSuggestions': 'off',
  'editor.inlineSuggest.enabled': true,
  'files.autoSave': 'off',
  'window.restoreWindows': 'none',
};

export async function startEditor(opts: EditorOptions): Promise<Editor> {
  const bin = codeServerBin();
  const vsix = vsixPath();
  const userDataDir = path.join(opts.tmp, 'user-data');
  const extensionsDir = path.join(opts.tmp, 'extensions');
  const workspace = path.join(opts.tmp, 'workspace');
  for (const [rel, content] of Object.entries(opts.files)) {
    fs.mkdirSync(path.dirname(path.join(workspace, rel)), { recursive: true });
    fs.writeFileSync(path.join(workspace, rel), content);
  }
  writeJson(path.join(userDataDir, 'User', 'settings.json'), { ...QUIET_SETTINGS, ...opts.settings });
  const env = { ...process.env, ...opts.env };

  log(`installing ${path.basename(vsix)} into ${extensionsDir}`);
  const inst = spawnSync(bin, ['--extensions-dir', extensionsDir, '--user-data-dir', userDataDir, '--install-extension', vsix], {
    encoding: 'utf8',
    env,
  });
  if (inst.status !== 0 || !/successfully installed/i.test(inst.stdout + inst.stderr)) {
    throw new Error(`installing the extension failed (${inst.status}):\n${inst.stdout}\n${inst.stderr}`);
  }

  const port = await freePort();
  const prefix = opts.artifactPrefix ?? '';
  const serverLog = fs.createWriteStream(path.join(ARTIFACTS, `${prefix}code-server.log`));
  const server = spawn(
    bin,
    [
      '--auth', 'none',
      '--bind-addr', `127.0.0.1:${port}`,
      '--disable-telemetry',
      '--disable-update-check',
      '--disable-workspace-trust',
      '--user-data-dir', userDataDir,
      '--extensions-dir', extensionsDir,
      workspace,
    ],
    { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  server.stdout?.pipe(serverLog);
  server.stderr?.pipe(serverLog);
  const url = `http://127.0.0.1:${port}/?folder=${encodeURIComponent(workspace)}`;
  await waitForHttp(`http://127.0.0.1:${port}/healthz`, 60_000);

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
  const context = await browser.newContext({ viewport: { width: 1600, height: 1000 } });
  const page = await context.newPage();
  page.on('pageerror', (e) => log(`page error: ${e.message}`));
  await page.goto(url);
  await page.locator('.monaco-workbench').waitFor({ timeout: 60_000 });
  log(`workbench up at ${url}`);

  const close = async (): Promise<void> => {
    await browser.close().catch(() => undefined);
    if (server.pid !== undefined) {
      try {
        process.kill(-server.pid, 'SIGTERM'); // its whole group: the extension host and our server
      } catch {
        /* already gone */
      }
    }
    await new Promise((r) => setTimeout(r, 1000));
    collectLogs(userDataDir, prefix);
    if (!process.env.KEEP_E2E_TMP) fs.rmSync(opts.tmp, { recursive: true, force: true });
  };
  return { url, workspace, userDataDir, page, browser, server, close };
}

async function waitForHttp(url: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch {
      /* not yet */
    }
    if (Date.now() > end) throw new Error(`${url} did not answer within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Copies the extension's output channel log (the server's log) into the artifacts. */
function collectLogs(userDataDir: string, prefix: string): void {
  const logs = path.join(userDataDir, 'logs');
  const found: string[] = [];
  const walk = (d: string): void => {
    for (const e of fs.existsSync(d) ? fs.readdirSync(d, { withFileTypes: true }) : []) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/Collab Coder|exthost\.log|remoteexthost\.log|^server\.log$/.test(e.name)) found.push(p);
    }
  };
  walk(logs);
  for (const f of found) fs.copyFileSync(f, path.join(ARTIFACTS, prefix + path.basename(f).replace(/[^\w.-]+/g, '_')));
}

export async function screenshot(page: Page, name: string): Promise<void> {
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file });
  log(`screenshot ${path.relative(REPO, file)}`);
}

/** Browser-side check (a string: this project's TypeScript has no DOM types). */
const PALETTE_GONE = `(() => {
  const widget = document.querySelector('.quick-input-widget');
  if (!widget || widget.style.display === 'none' || widget.offsetParent === null) return true;
  const box = widget.querySelector('input');
  return !box || !box.value.startsWith('>');
})()`;

/** Runs a command from the command palette by its title. */
export async function runCommand(page: Page, title: string): Promise<void> {
  await page.keyboard.press('F1');
  const input = page.locator('.quick-input-widget input');
  await input.waitFor({ state: 'visible' });
  await input.fill(`>${title}`);
  const row = page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first();
  await row.waitFor({ state: 'visible', timeout: 15_000 });
  await page.keyboard.press('Enter');
  // The palette closes, or the command opens a quick input of its own in the same widget at
  // once (then "hidden" may never be observable): either way the palette's `>` text is gone.
  await page.waitForFunction(PALETTE_GONE, undefined, { timeout: 30_000 });
}

/** Opens a workspace file with Quick Open and waits for its editor. */
export async function openFile(page: Page, name: string): Promise<void> {
  await page.keyboard.press('Control+P');
  const input = page.locator('.quick-input-widget input');
  await input.waitFor({ state: 'visible' });
  await input.fill(name);
  await page.locator('.quick-input-list .monaco-list-row', { hasText: name }).first().waitFor({ timeout: 15_000 });
  await page.keyboard.press('Enter');
  await page.locator(`.tabs-container .tab[aria-label*="${name}"]`).first().waitFor({ timeout: 15_000 });
  await page.locator('.monaco-editor .view-lines').first().waitFor();
}

/** The content of the panel's webview (an iframe inside an iframe). */
export function panelFrame(page: Page): FrameLocator {
  return page.frameLocator('iframe.webview.ready').last().frameLocator('#active-frame');
}

/** The status bar item of the extension. */
export function statusItem(page: Page) {
  return page.locator('.statusbar-item', { hasText: 'Collab:' }).first();
}

export async function waitFor(what: string, fn: () => Promise<boolean>, timeoutMs: number, stepMs = 500): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await fn().catch(() => false)) return;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
