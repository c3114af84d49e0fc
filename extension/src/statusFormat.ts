// Text of the status bar item, from the panel state. Plain strings (codicons as `$(name)`).

import type { PanelState } from './panelState';
import { formatMs } from './panelView';

export interface StatusBarView {
  text: string;
  tooltip: string;
  /** 'error' and 'warning' pick the item's background colour. */
  severity: 'normal' | 'warning' | 'error';
}

export function statusBarView(state: PanelState): StatusBarView {
  const st = state.status;
  const model = st ? `${st.backend}/${st.model}` : '';
  const latency = st?.lastLatencyMs != null ? formatMs(st.lastLatencyMs) : '';
  const parts = (icon: string, label: string): string =>
    [`${icon} Collab: ${label}`, model, latency].filter((p) => p !== '').join(' · ');

  const lines: string[] = [];
  if (st) {
    lines.push(`Backend: ${st.backend}`, `Model: ${st.model}`);
    if (st.lastLatencyMs != null) lines.push(`Last latency: ${formatMs(st.lastLatencyMs)}`);
    lines.push(`Shown ${st.shown}, accepted ${st.accepted}`);
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
