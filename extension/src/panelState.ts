// The status panel's state and its reducer: every change goes through `reduce(state, action)`,
// so the panel's behaviour is testable without VS Code.

import type { IterationNotification, RunCandidate, RunFeedbackResult, StatsResult, StatusNotification } from './protocol';
import { withVerdict } from './verdict';

export type Connection = 'stopped' | 'starting' | 'running' | 'failed';
export type RunPhase = 'running' | 'done' | 'failed' | 'cancelled' | 'accepted' | 'discarded';

export interface RunState {
  token: string;
  uri: string;
  /** Short name of the document, for the header. */
  label: string;
  line: number;
  character: number;
  iterationsRequested: number;
  phase: RunPhase;
  iterations: IterationNotification[];
  result: RunFeedbackResult | null;
  error: string | null;
  /** Node id of the candidate applied, or 'best' for the result's own edit. */
  acceptedNodeId: string | null;
  startedAt: number;
  finishedAt: number | null;
}

export interface PanelState {
  connection: Connection;
  /** Last `collab/status`. */
  status: StatusNotification | null;
  /** Last `collab.getStats` answer. */
  stats: StatsResult | null;
  inlineEnabled: boolean;
  /** Interpreter that runs the server, once known. */
  serverPython: string | null;
  run: RunState | null;
  /** Errors seen by the editor side (server start, failed runs), newest first. */
  clientErrors: string[];
}

export const MAX_CLIENT_ERRORS = 10;

export const initialState: Readonly<PanelState> = Object.freeze({
  connection: 'stopped',
  status: null,
  stats: null,
  inlineEnabled: true,
  serverPython: null,
  run: null,
  clientErrors: [],
});

export type Action =
  | { type: 'connection'; connection: Connection; serverPython?: string | null }
  | { type: 'status'; status: StatusNotification }
  | { type: 'stats'; stats: StatsResult }
  | { type: 'inlineEnabled'; enabled: boolean }
  | {
      type: 'runStarted';
      token: string;
      uri: string;
      label: string;
      line: number;
      character: number;
      iterations: number;
      now: number;
    }
  | { type: 'iteration'; iteration: IterationNotification }
  | { type: 'runFinished'; result: RunFeedbackResult; now: number }
  | { type: 'runFailed'; token: string; error: string; now: number }
  | { type: 'runCancelled'; token: string; now: number }
  | { type: 'accepted'; token: string; nodeId: string }
  | { type: 'discarded'; token: string }
  | { type: 'clientError'; message: string };

function pushError(errors: readonly string[], message: string): string[] {
  return [message, ...errors.filter((e) => e !== message)].slice(0, MAX_CLIENT_ERRORS);
}

function sameRun(state: PanelState, token: string): state is PanelState & { run: RunState } {
  return state.run !== null && state.run.token === token;
}

export function reduce(state: PanelState, action: Action): PanelState {
  switch (action.type) {
    case 'connection':
      return {
        ...state,
        connection: action.connection,
        serverPython: action.serverPython !== undefined ? action.serverPython : state.serverPython,
        // A run cannot outlive its server.
        run:
          action.connection !== 'running' && state.run?.phase === 'running'
            ? { ...state.run, phase: 'failed', error: 'the server stopped during the run', finishedAt: state.run.finishedAt }
            : state.run,
      };
    case 'status':
      return {
        ...state,
        status: action.status,
        // Counts and the verdict in a status are newer than the last stats answer.
        stats: state.stats
          ? {
              ...state.stats,
              shown: action.status.shown,
              accepted: action.status.accepted,
              acceptanceRate: action.status.shown > 0 ? action.status.accepted / action.status.shown : 0,
              ...(action.status.lastVerdict !== undefined ? { lastVerdict: action.status.lastVerdict } : {}),
            }
          : state.stats,
      };
    case 'stats':
      return { ...state, stats: action.stats };
    case 'inlineEnabled':
      return { ...state, inlineEnabled: action.enabled };
    case 'runStarted':
      return {
        ...state,
        run: {
          token: action.token,
          uri: action.uri,
          label: action.label,
          line: action.line,
          character: action.character,
          iterationsRequested: action.iterations,
          phase: 'running',
          iterations: [],
          result: null,
          error: null,
          acceptedNodeId: null,
          startedAt: action.now,
          finishedAt: null,
        },
      };
    case 'iteration': {
      const it = withVerdict(action.iteration);
      if (!sameRun(state, it.token) || state.run.phase !== 'running') return state;
      // A repeated notification for the same node replaces the earlier one.
      const others = state.run.iterations.filter((x) => x.nodeId !== it.nodeId);
      const iterations = [...others, it].sort((a, b) => a.iteration - b.iteration);
      return { ...state, run: { ...state.run, iterations } };
    }
    case 'runFinished': {
      const r = action.result;
      if (!sameRun(state, r.token) || state.run.phase !== 'running') return state;
      return { ...state, run: { ...state.run, phase: 'done', result: r, finishedAt: action.now } };
    }
    case 'runFailed':
      if (!sameRun(state, action.token)) return { ...state, clientErrors: pushError(state.clientErrors, action.error) };
      return {
        ...state,
        run: { ...state.run, phase: 'failed', error: action.error, finishedAt: action.now },
        clientErrors: pushError(state.clientErrors, action.error),
      };
    case 'runCancelled':
      if (!sameRun(state, action.token) || state.run.phase !== 'running') return state;
      return { ...state, run: { ...state.run, phase: 'cancelled', finishedAt: action.now } };
    case 'accepted':
      if (!sameRun(state, action.token) || state.run.phase !== 'done') return state;
      return { ...state, run: { ...state.run, phase: 'accepted', acceptedNodeId: action.nodeId } };
    case 'discarded':
      if (!sameRun(state, action.token) || state.run.phase !== 'done') return state;
      return { ...state, run: { ...state.run, phase: 'discarded' } };
    case 'clientError':
      return { ...state, clientErrors: pushError(state.clientErrors, action.message) };
  }
}

/**
 * The candidate the run chose: the one whose text is the result's completion, else the server's
 * own order: verified first, then not blocked by a critical analyzer, then the (evidence-first)
 * score. Null when the run produced nothing.
 */
export function bestCandidate(result: RunFeedbackResult): RunCandidate | null {
  if (result.candidates.length === 0) return null;
  const same = result.candidates.find((c) => c.completion === result.completion);
  if (same) return same;
  const rank = (c: RunCandidate): number[] => [Number(c.verified), Number(c.passing), c.score];
  return [...result.candidates].sort((a, b) => compareDesc(rank(a), rank(b)))[0] ?? null;
}

function compareDesc(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return (b[i] ?? 0) - (a[i] ?? 0);
  return 0;
}

/** The verdict of the last suggestion the server judged (inline or a panel run), if any. */
export function lastVerdict(state: PanelState): string | null {
  return state.stats?.lastVerdict ?? state.status?.lastVerdict ?? null;
}

/**
 * The run's result as the panel keeps it: what a server leaves out filled in, and a missing
 * verdict never read as a pass (`withVerdict`). `token` is ours: runs are matched by it.
 */
export function normalizeResult(r: Partial<RunFeedbackResult> | null, token: string): RunFeedbackResult {
  const chosen = withVerdict({ verdict: r?.verdict, verified: r?.verified });
  return {
    token,
    completion: r?.completion ?? '',
    passed: r?.passed ?? false,
    verdict: chosen.verdict,
    verified: chosen.verified,
    stopReason: r?.stopReason ?? 'unknown',
    timeMs: r?.timeMs ?? 0,
    edit: r?.edit ?? null,
    candidates: Array.isArray(r?.candidates) ? r.candidates.map((c) => withVerdict(c)) : [],
  };
}

/** The candidate with this node id ('best' is the run's choice), or null. */
export function candidateFor(result: RunFeedbackResult, nodeId: string): RunCandidate | null {
  if (nodeId === 'best') return bestCandidate(result);
  return result.candidates.find((c) => c.nodeId === nodeId) ?? null;
}

/** Errors to show: the server's own last errors, then the editor side's, without repeats. */
export function visibleErrors(state: PanelState): string[] {
  const server = state.stats?.lastErrors ?? [];
  const fromStatus = state.status?.lastError ? [state.status.lastError] : [];
  return [...new Set([...fromStatus, ...server, ...state.clientErrors])].slice(0, MAX_CLIENT_ERRORS);
}
