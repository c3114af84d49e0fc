// Text of the status bar item, from the panel state. Plain strings (codicons as `$(name)`).

import { lastVerdict, type PanelState } from './panelState';
import { formatMs } from './panelView';
import { isFailure, shortVerdict, STATIC_ONLY } from './verdict';

export interface StatusBarView {
  text: string;
  tooltip: string;
  /** 'error' and 'warning' pick the item's background colour. */
  severity: 'normal' | 'warning' | 'error';
}

/**
 * The last verdict, short, with an icon that never makes `static checks only` (or anything not
 * behaviour-checked) look like a pass: a check mark only for `... passed n/n`.
 */
export function verdictBadge(verdict: string | null): string {
  if (verdict === null) return '';
  if (isFailure(verdict)) return `$(error) ${shortVerdict(verdict, 32)}`;
  if (verdict === STATIC_ONLY) return `$(circle-outline) ${verdict}`;
  if (allPassed(verdict)) return `$(pass) ${verdict}`;
  return shortVerdict(verdict, 32);
}

/**
 * `tests passed 3/3`: behaviour ran and all of it passed. (The server words a partial pass or a
 * blocking analyzer as `failed: ...`; a status only carries the words, not `verified`.)
 */
function allPassed(verdict: string): boolean {
  const m = /^(tests|examples|asserts) passed (\d+)\/(\d+)$/.exec(verdict);
  return m !== null && m[2] === m[3] && Number(m[3]) > 0;
}

function verdictLine(verdict: string): string {
  const meaning = isFailure(verdict)
    ? ''
    : allPassed(verdict)
      ? ' (behaviour checked and passed)'
      : ' (no tests, examples or asserts ran: not a pass)';
  return `Last verdict: ${verdict}${meaning}`;
}

export function statusBarView(state: PanelState): StatusBarView {
  const st = state.status;
  const model = st ? `${st.backend}/${st.model}` : '';
  const latency = st?.lastLatencyMs != null ? formatMs(st.lastLatencyMs) : '';
  const verdict = lastVerdict(state);
  const parts = (icon: string, label: string): string =>
    [`${icon} Collab: ${label}`, model, latency, verdictBadge(verdict)].filter((p) => p !== '').join(' · ');

  const lines: string[] = [];
  if (st) {
    lines.push(`Backend: ${st.backend}`, `Model: ${st.model}`);
    if (st.lastLatencyMs != null) lines.push(`Last latency: ${formatMs(st.lastLatencyMs)}`);
    lines.push(`Shown ${st.shown}, accepted ${st.accepted}`);
    if (verdict !== null) lines.push(verdictLine(verdict));
    if (st.lastError) lines.push(`Last error: ${st.lastError}`);
  }
  if (!state.inlineEnabled) lines.push('Inline completions are off (Collab: Toggle Inline Completions)');
  if (state.serverPython) lines.push(`Server interpreter: ${state.serverPython}`);
  lines.push('Click to open the Collab Coder panel');
  const tooltip = lines.join('\n');

  switch (state.connection) {
    case 'stopped':
      return { text: '$(circle-slash) Collab: stopped', tooltip, severity: 'normal' };
    case 'starting':
      return { text: '$(loading~spin) Collab: starting', tooltip, severity: 'normal' };
    case 'failed':
      return { text: '$(error) Collab: server failed', tooltip, severity: 'error' };
    case 'running':
      // Connected, but the server has not said what it serves yet.
      if (!st) return { text: '$(loading~spin) Collab: starting', tooltip, severity: 'normal' };
      break;
  }
  const state_ = st?.state ?? 'idle';
  if (state_ === 'error') return { text: parts('$(error)', 'error'), tooltip, severity: 'error' };
  if (state_ === 'working') return { text: parts('$(sync~spin)', 'working'), tooltip, severity: 'normal' };
  if (!state.inlineEnabled) return { text: parts('$(circle-slash)', 'off'), tooltip, severity: 'warning' };
  return { text: parts('$(sparkle)', 'idle'), tooltip, severity: 'normal' };
}
