// End to end in a real VS Code: install the .vsix into code-server, open a Python file, type,
// accept the ghost text with Tab; then run "Collab: Run Feedback Iterations", watch the panel
// fill with iterations, accept the best candidate and check the file.
//
// The model is real: the embedded SmolLM2-135M-Instruct through the `llamacpp` backend
// (default), or the same model behind `python -m collabcoder.server.openai_server` with
// COLLAB_E2E_BACKEND=openai. Screenshots and logs land in extension/e2e/artifacts/.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  ARTIFACTS,
  log,
  openFile,
  panelFrame,
  runCommand,
  screenshot,
  serverPython,
  startEditor,
  statusItem,
  waitFor,
  type Editor,
} from './harness';

const BACKEND = process.env.COLLAB_E2E_BACKEND ?? 'llamacpp';
const MODEL = 'smollm2-135m-instruct';

// Sites where a 135M chat model gives a one-line answer that parses in place.
const COMPLETION_FILE = 'circle.py';
const COMPLETION_SOURCE = 'import math\n\n\ndef area_of_circle(radius: float) -> float:\n    """Return the area of a circle with the given radius."""\n';
const COMPLETION_TYPED = '    return ';
const LOOP_FILE = 'square.py';
const LOOP_SOURCE = 'def square(x: int) -> int:\n    """Return x squared."""\n';
const LOOP_TYPED = '    return ';

const timings: Record<string, number> = {};
async function timed<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  try {
    return await fn();
  } finally {
    timings[name] = (Date.now() - t0) / 1000;
    log(`${name}: ${timings[name].toFixed(1)} s`);
  }
}

/** Starts the OpenAI-compatible server on a free port; resolves with its base URL. */
function startOpenAIServer(python: string): Promise<{ url: string; proc: ChildProcess }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(python, ['-m', 'collabcoder.server.openai_server', '--model', MODEL, '--port', '0', '--host', '127.0.0.1'], {
      env: { ...process.env, HF_HUB_OFFLINE: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const errLog = fs.createWriteStream(path.join(ARTIFACTS, 'openai-server.log'));
    proc.stderr?.pipe(errLog);
    let out = '';
    const timer = setTimeout(() => reject(new Error(`the OpenAI-compatible server printed no URL in 180 s: ${out}`)), 180_000);
    proc.stdout?.setEncoding('utf8');
    proc.stdout?.on('data', (d: string) => {
      out += d;
      const m = /(https?:\/\/127\.0\.0\.1:\d+[^\s]*)/.exec(out);
      if (m) {
        clearTimeout(timer);
        const base = m[1]!.replace(/\/+$/, '');
        resolve({ url: base.endsWith('/v1') ? base : `${base}/v1`, proc });
      }
    });
    proc.on('exit', (code) => reject(new Error(`the OpenAI-compatible server exited (${code}) before printing its URL: ${out}`)));
  });
}

/** The file's text once the editor saved it. */
async function savedText(ed: Editor, name: string): Promise<string> {
  await ed.page.keyboard.press('Control+S');
  const tab = ed.page.locator(`.tabs-container .tab[aria-label*="${name}"]`).first();
  await waitFor(`${name} to be saved`, async () => !/\bdirty\b/.test((await tab.getAttribute('class')) ?? ''), 10_000, 200);
  return fs.readFileSync(path.join(ed.workspace, name), 'utf8');
}

/** A test body that leaves a screenshot behind when it fails. */
function withScreenshot(name: string, fn: () => Promise<void>): () => Promise<void> {
  return async () => {
    try {
      await fn();
    } catch (e) {
      if (edRef) await screenshot(edRef.page, `failed-${name}`).catch(() => undefined);
      throw e;
    }
  };
}
let edRef: Editor | undefined;

/** Puts the cursor at the end of the document. */
async function cursorToEnd(ed: Editor): Promise<void> {
  await ed.page.locator('.monaco-editor .view-lines').first().click();
  await ed.page.keyboard.press('Control+End');
}

describe(`Collab Coder in VS Code (code-server 4.100.3, backend ${BACKEND})`, { timeout: 15 * 60_000 }, () => {
  let ed: Editor;
  let openai: ChildProcess | undefined;
  const t0 = Date.now();

  before(async () => {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    for (const f of fs.readdirSync(ARTIFACTS)) {
      if (!f.startsWith('install-')) fs.rmSync(path.join(ARTIFACTS, f), { recursive: true, force: true });
    }
    const python = serverPython();
    const settings: Record<string, unknown> = {
      'collab.server.pythonPath': python,
      'collab.server.logLevel': 'debug',
      'collab.backend': BACKEND,
      'collab.model': MODEL,
      // A 135M model on 2 shared CPU cores writes ~15 tokens/s when it has them, several times
      // slower when other work runs: short answers, generous budgets.
      'collab.maxTokens': 64,
      'collab.latencyBudgetMs': 60_000,
      'collab.debounceMs': 100,
      'collab.maxIterations': 1,
      // The panel on the right: room for the iterations next to the editor in screenshots.
      'workbench.panel.defaultLocation': 'right',
      // mypy left out for time; `behaviour` finds nothing to run in these files (no examples,
      // no tests): every verdict here is `static checks only` or `failed: ...` (see below).
      'collab.analyzers': ['syntax', 'signature', 'hallucination', 'behaviour'],
    };
    if (BACKEND === 'openai') {
      const srv = await timed('openai server start', () => startOpenAIServer(python));
      openai = srv.proc;
      settings['collab.endpointUrl'] = srv.url;
      log(`OpenAI-compatible server at ${srv.url}`);
    }
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'collab-e2e-'));
    ed = await timed('code-server start', () =>
      startEditor({
        tmp,
        settings,
        files: { [COMPLETION_FILE]: COMPLETION_SOURCE, [LOOP_FILE]: LOOP_SOURCE },
        env: { HF_HUB_OFFLINE: '1', TOKENIZERS_PARALLELISM: 'false' },
      }),
    );
    edRef = ed;
  });

  after(async () => {
    timings.total = (Date.now() - t0) / 1000;
    fs.writeFileSync(path.join(ARTIFACTS, 'timings.json'), JSON.stringify(timings, null, 2));
    await ed?.close();
    openai?.kill();
  });

  it('starts the server and shows its state in the status bar', withScreenshot('status', async () => {
    await openFile(ed.page, COMPLETION_FILE);
    const expected = new RegExp(`Collab: idle · ${BACKEND}/${MODEL}`);
    await timed('server ready', () =>
      waitFor('the status bar to say idle', async () => expected.test((await statusItem(ed.page).textContent()) ?? ''), 240_000),
    );
    log(`status bar: ${(await statusItem(ed.page).textContent()) ?? ''}`);
  }));

  it('shows ghost text while typing and Tab accepts it', withScreenshot('ghost-text', async () => {
    const page = ed.page;
    await cursorToEnd(ed);
    await page.keyboard.type(COMPLETION_TYPED, { delay: 30 });
    const ghost = page.locator('.ghost-text-decoration, .ghost-text').first();
    let lastAsk = Date.now();
    await timed('first ghost text', () =>
      waitFor(
        'ghost text',
        async () => {
          if (await ghost.isVisible()) return true;
          // VS Code does not ask again after an empty answer: when the server is idle and
          // nothing showed for a while, ask explicitly, as a user would (Alt+\\).
          const idle = /Collab: idle/.test((await statusItem(page).textContent()) ?? '');
          if (idle && Date.now() - lastAsk > 20_000) {
            log('no ghost text yet and the server is idle: Trigger Inline Suggestion');
            await runCommand(page, 'Trigger Inline Suggestion');
            lastAsk = Date.now();
          }
          return false;
        },
        300_000,
      ),
    );
    const shown = (await page.locator('.ghost-text-decoration, .ghost-text').allTextContents()).join('').replace(/\u00a0/g, ' ');
    log(`ghost text: ${JSON.stringify(shown)}`);
    await screenshot(page, '01-ghost-text');
    await page.keyboard.press('Tab');
    await waitFor('the ghost text to be accepted', async () => !(await ghost.isVisible()), 10_000, 200);
    const text = await savedText(ed, COMPLETION_FILE);
    log(`file after Tab: ${JSON.stringify(text)}`);
    await screenshot(page, '02-accepted');
    assert.ok(text.startsWith(COMPLETION_SOURCE + COMPLETION_TYPED), 'the original text is kept');
    const added = text.slice((COMPLETION_SOURCE + COMPLETION_TYPED).length);
    assert.ok(added.trim().length > 0, 'Tab inserted the completion');
    // What was inserted is what was shown (the DOM splits ghost text into spans and lines).
    const squash = (s: string): string => s.replace(/\s+/g, '');
    assert.equal(squash(added), squash(shown), 'the file holds exactly the ghost text');
  }));

  it('runs feedback iterations, shows them in the panel, and applies the accepted candidate', withScreenshot('feedback', async () => {
    const page = ed.page;
    await openFile(page, LOOP_FILE);
    await cursorToEnd(ed);
    await page.keyboard.type(LOOP_TYPED, { delay: 30 });
    await runCommand(page, 'Collab: Run Feedback Iterations');
    const panel = panelFrame(page);
    await timed('panel shows first iteration', () => panel.locator('[data-testid="iteration"]').first().waitFor({ timeout: 300_000 }));
    await screenshot(page, '03-panel-running');
    await timed('run finished', () => panel.locator('[data-testid="result"]').waitFor({ timeout: 400_000 }));
    const iterations = await panel.locator('[data-testid="iteration"]').count();
    const analyzerRows = await panel.locator('[data-testid="analyzer"]').count();
    log(`panel: ${iterations} iterations, ${analyzerRows} analyzer rows; phase: ${await panel.locator('[data-testid="run-phase"]').textContent()}`);
    assert.ok(iterations >= 1, 'the panel shows the iterations');
    assert.ok(analyzerRows >= 1, 'with their analyzer results');
    // square() has no examples and no tests: whatever the real model wrote, nothing was
    // behaviour-checked, so no candidate may be called passing or shown in green (issue 12).
    const verdicts = await panel.locator('[data-testid="iteration"] [data-testid="verdict"]').allTextContents();
    log(`verdicts: ${JSON.stringify(verdicts)}`);
    assert.equal(verdicts.length, iterations, 'each candidate shows its verdict');
    for (const v of verdicts) assert.match(v, /^(static checks only|failed: .+)$/, 'an honest verdict for an unchecked site');
    assert.equal(await panel.locator('ol.iterations .ok, [data-testid="result"] .ok').count(), 0, 'nothing green');
    assert.doesNotMatch((await panel.locator('body').textContent()) ?? '', /passing/i);
    await screenshot(page, '04-panel-done');

    const bestCode = (await panel.locator('li.iteration.best pre.code').first().textContent()) ?? '';
    log(`best candidate: ${JSON.stringify(bestCode)}`);
    const before = fs.readFileSync(path.join(ed.workspace, LOOP_FILE), 'utf8');
    await panel.locator('button[data-action="accept"][data-node="best"]').click();
    await panel.locator('[data-testid="run-phase"]', { hasText: 'applied' }).waitFor({ timeout: 15_000 });
    const text = await savedText(ed, LOOP_FILE);
    log(`file after accepting: ${JSON.stringify(text)}`);
    await screenshot(page, '05-panel-accepted');
    assert.notEqual(text, before, 'accepting changed the file');
    assert.equal(text, LOOP_SOURCE + LOOP_TYPED + bestCode, 'the best candidate went in at the cursor');
    // The server counted the applied run (collab.acceptCompletion {run}); the panel shows it.
    await panel.locator('[data-testid="counts"]', { hasText: 'Panel runs applied 1/1' }).waitFor({ timeout: 15_000 });
  }));

  it('toggles inline completions from the command palette, without a reload', withScreenshot('toggle', async () => {
    const page = ed.page;
    await runCommand(page, 'Collab: Toggle Inline Completions');
    await waitFor('the status bar to say off', async () => /Collab: off/.test((await statusItem(page).textContent()) ?? ''), 15_000, 200);
    const settings = JSON.parse(fs.readFileSync(path.join(ed.userDataDir, 'User', 'settings.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(settings['collab.inlineCompletions.enabled'], false, 'the toggle wrote the user setting');
    await screenshot(page, '06-inline-off');
    await runCommand(page, 'Collab: Toggle Inline Completions');
    await waitFor('the status bar to say idle', async () => /Collab: idle/.test((await statusItem(page).textContent()) ?? ''), 15_000, 200);
  }));

  it('reports a broken server interpreter with actions, and recovers when another is chosen', withScreenshot('interpreter', async () => {
    const page = ed.page;
    /** "Collab: Choose the Server's Python Interpreter" -> "Enter the interpreter path..." -> path. */
    const choose = async (python: string): Promise<void> => {
      await runCommand(page, "Collab: Choose the Server's Python Interpreter");
      const input = page.locator('.quick-input-widget input');
      await page.locator('.quick-input-list .monaco-list-row', { hasText: 'Enter the interpreter path' }).first().click();
      await page.locator('.quick-input-widget', { hasText: 'Interpreter path' }).waitFor({ state: 'visible' });
      await input.fill(python);
      await page.keyboard.press('Enter');
      await page.locator('.quick-input-widget').waitFor({ state: 'hidden' });
    };
    await choose('/nonexistent/bin/python');
    const toast = page.locator('.notification-toast', { hasText: 'collab.server.pythonPath: could not run /nonexistent/bin/python' });
    await toast.waitFor({ timeout: 60_000 });
    await waitFor('the status bar to say failed', async () => /Collab: server failed/.test((await statusItem(page).textContent()) ?? ''), 15_000, 200);
    const actions = (await toast.locator('.monaco-button').allTextContents()).filter((a) => a.trim());
    assert.deepEqual(actions, ['Choose Interpreter', 'Open Settings', 'Show Logs']);
    await page.waitForTimeout(800); // the toast slides in
    await screenshot(page, '07-broken-interpreter');
    await choose(serverPython());
    await timed('restart with a good interpreter', () =>
      waitFor('the status bar to say idle', async () => /Collab: idle · /.test((await statusItem(page).textContent()) ?? ''), 120_000),
    );
  }));
});
