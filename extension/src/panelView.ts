// Renders the panel's state as HTML. Everything from the model or the server is escaped: the
// webview runs with a strict CSP, and candidate code is untrusted text.

import type { AnalyzerReport, Evidence, IterationNotification, Verdict } from './protocol';
import { bestCandidate, visibleErrors, type PanelState, type RunState } from './panelState';
import { stopReasonText, verdictMeaning, verdictTone } from './verdict';

export function escapeHtml(s: string): string {
  return s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

const esc = escapeHtml;

export function formatMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '-';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
}

export function formatScore(score: number | null | undefined): string {
  if (score === null || score === undefined || !Number.isFinite(score)) return '-';
  return score.toFixed(2);
}

function button(action: string, label: string, extra: Record<string, string> = {}, primary = false): string {
  const attrs = Object.entries(extra)
    .map(([k, v]) => ` data-${k}="${esc(v)}"`)
    .join('');
  return `<button class="${primary ? 'primary' : 'secondary'}" data-action="${esc(action)}"${attrs}>${esc(label)}</button>`;
}

/** The analyzer that runs the user's tests, examples and asserts (the only behaviour evidence). */
export const BEHAVIOUR_ANALYZER = 'behaviour';

/**
 * One analyzer's outcome. Green only for behaviour that really ran and passed: a static check
 * that passed is neutral, so a candidate checked only statically shows no green at all.
 */
function analyzerOutcome(a: AnalyzerReport, evidence: Evidence): { text: string; cls: string } {
  if (a.infraError) return { text: 'infra error', cls: 'warn' };
  if (a.skipped) return { text: 'skipped', cls: 'muted' };
  if (!a.passed) return { text: 'failed', cls: 'bad' };
  return { text: 'passed', cls: a.name === BEHAVIOUR_ANALYZER && evidence !== 'none' ? 'ok' : 'neutral' };
}

/** The verdict as a tag: its words, coloured by `verdictTone`, its meaning as a tooltip. */
export function verdictTag(v: Pick<Verdict, 'verdict' | 'verified'>): string {
  const tone = verdictTone(v);
  return (
    `<span class="tag verdict ${tone}" data-testid="verdict" data-verified="${v.verified && tone === 'ok'}"` +
    ` title="${esc(verdictMeaning(v))}">${esc(v.verdict)}</span>`
  );
}

function renderAnalyzers(analyzers: readonly AnalyzerReport[], evidence: Evidence): string {
  if (analyzers.length === 0) return '<p class="muted">No analyzer results.</p>';
  // A list rather than a table: it reads in a narrow side panel as well as in a wide one.
  const rows = analyzers
    .map((a) => {
      const o = analyzerOutcome(a, evidence);
      return (
        `<li data-testid="analyzer"><span class="name">${esc(a.name)}</span> <span class="muted">${esc(a.kind)}</span>` +
        ` <span class="${o.cls}">${esc(o.text)}</span> <span class="num">${esc(formatScore(a.score))}</span>` +
        (a.message ? `<pre class="message">${esc(a.message)}</pre>` : '') +
        '</li>'
      );
    })
    .join('');
  return `<ul class="analyzers">${rows}</ul>`;
}

function renderIteration(run: RunState, it: IterationNotification, bestNodeId: string | null): string {
  const canAccept = run.phase === 'done' && run.result?.candidates.some((c) => c.nodeId === it.nodeId && c.edit);
  const accepted = run.phase === 'accepted' && run.acceptedNodeId === it.nodeId;
  const isBest = bestNodeId === it.nodeId;
  const tags = [
    verdictTag(it),
    isBest ? '<span class="tag best">best</span>' : '',
    accepted ? '<span class="tag applied">applied</span>' : '',
  ].join('');
  const parent = it.parentId ? ` <span class="muted">from ${esc(it.parentId)}</span>` : '';
  const code = it.completion === '' ? '<p class="muted">(empty completion)</p>' : `<pre class="code">${esc(it.completion)}</pre>`;
  return (
    `<li class="iteration${isBest ? ' best' : ''}" data-testid="iteration" data-node="${esc(it.nodeId)}">` +
    `<div class="iter-head"><strong>Iteration ${it.iteration}</strong> <span class="muted">node ${esc(it.nodeId)}</span>${parent}` +
    ` <span class="score">score ${esc(formatScore(it.score))}</span> ${tags}` +
    `${canAccept ? ' ' + button('accept', 'Accept', { node: it.nodeId }) : ''}</div>` +
    code +
    renderAnalyzers(it.analyzers, it.evidence) +
    '</li>'
  );
}

function phaseText(run: RunState, now: number): string {
  switch (run.phase) {
    case 'running':
      return `running: ${run.iterations.length} judged, ${formatMs(now - run.startedAt)}`;
    case 'done':
      // The chosen completion's verdict, never the wire's `passed` (no critical analyzer blocks).
      return run.result
        ? `done: ${run.result.verdict}, stopped by ${stopReasonText(run.result.stopReason)}, ${formatMs(run.result.timeMs)}`
        : 'done';
    case 'failed':
      return 'failed';
    case 'cancelled':
      return 'cancelled';
    case 'accepted':
      return 'applied to the document';
    case 'discarded':
      return 'discarded';
  }
}

function renderRun(run: RunState, now: number): string {
  const best = run.result ? bestCandidate(run.result) : null;
  const head =
    `<div class="run-head"><h2>Run at ${esc(run.label)}:${run.line + 1}:${run.character + 1}</h2>` +
    `<span class="phase phase-${run.phase}" data-testid="run-phase">${esc(phaseText(run, now))}</span>` +
    (run.phase === 'running' ? ' ' + button('cancel', 'Cancel') : '') +
    '</div>';
  let actions = '';
  if (run.phase === 'done') {
    actions = best
      ? `<div class="result" data-testid="result">${button('accept', 'Accept Best', { node: 'best' }, true)} ${button('discard', 'Discard')}` +
        ` <span class="muted">best: node ${esc(best.nodeId)}, score ${esc(formatScore(best.score))}</span> ${verdictTag(best)}</div>`
      : `<div class="result" data-testid="result"><span class="muted">The run produced no candidate.</span> ${button('discard', 'Dismiss')}</div>`;
  }
  const error = run.error ? `<p class="bad" data-testid="run-error">${esc(run.error)}</p>` : '';
  const items = run.iterations.map((it) => renderIteration(run, it, best?.nodeId ?? null)).join('');
  const waiting =
    run.phase === 'running' && run.iterations.length === 0 ? '<p class="muted">Waiting for the first candidate...</p>' : '';
  return `<section class="run">${head}${actions}${error}${waiting}<ol class="iterations">${items}</ol></section>`;
}

function renderStatus(state: PanelState): string {
  const st = state.status;
  const stateText = state.connection !== 'running' ? state.connection : (st?.state ?? 'idle');
  const backend = st ? `${esc(st.backend)} &middot; ${esc(st.model)}` : '<span class="muted">backend not reported yet</span>';
  const latency = st?.lastLatencyMs != null ? ` &middot; last ${esc(formatMs(st.lastLatencyMs))}` : '';
  const stats = state.stats;
  const shown = stats?.shown ?? st?.shown ?? 0;
  const accepted = stats?.accepted ?? st?.accepted ?? 0;
  const rate = shown > 0 ? Math.round((100 * accepted) / shown) : 0;
  const panelRuns = stats?.panelRuns ?? 0;
  const panel = panelRuns > 0 ? ` &middot; Panel runs applied ${stats?.panelAccepted ?? 0}/${panelRuns}` : '';
  return (
    '<section class="status">' +
    `<div><span class="state state-${esc(stateText)}" data-testid="state">${esc(stateText)}</span> ${backend}${latency}</div>` +
    `<div class="counts" data-testid="counts">Shown ${shown} &middot; Accepted ${accepted} (${rate}%)${panel} &middot; Inline completions ${state.inlineEnabled ? 'on' : 'off'}</div>` +
    (state.serverPython ? `<div class="muted small">Server: ${esc(state.serverPython)}</div>` : '') +
    `<div class="actions">${button('run', 'Run Feedback Iterations', {}, true)} ${button('refresh', 'Refresh')} ${button('toggle', state.inlineEnabled ? 'Turn Inline Off' : 'Turn Inline On')} ${button('logs', 'Show Logs')}</div>` +
    '</section>'
  );
}

function renderErrors(state: PanelState): string {
  const errors = visibleErrors(state);
  if (errors.length === 0) return '';
  return `<section class="errors"><h3>Last errors</h3><ul>${errors.map((e) => `<li><pre>${esc(e)}</pre></li>`).join('')}</ul></section>`;
}

/** The panel's body for a state. */
export function renderPanel(state: PanelState, now: number): string {
  const run = state.run
    ? renderRun(state.run, now)
    : '<section class="run"><p class="muted">Put the cursor where code should go and run <strong>Collab: Run Feedback Iterations</strong>: each candidate, the analyzers\' verdicts and its score appear here.</p></section>';
  return renderStatus(state) + run + renderErrors(state);
}
