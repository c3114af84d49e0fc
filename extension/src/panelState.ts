// The status panel's state and its reducer: every change goes through `reduce(state, action)`,
// so the panel's behaviour is testable without VS Code.

import type { IterationNotification, RunCandidate, RunFeedbackResult, StatsResult, StatusNotification } from './protocol';

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
        // Counts in a status are newer than the last stats answer.
        stats: state.stats
          ? {
              ...state.stats,
              shown: action.status.shown,
              accepted: action.status.accepted,
              acceptanceRate: action.status.shown > 0 ? action.status.accepted / action.status.shown : 0,
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
      const it = action.iteration;
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
 * The candidate the run chose: the one whose text is the result's completion, else the best
 * score (passing first). Null when the run produced nothing.
 */
export function bestCandidate(result: RunFeedbackResult): RunCandidate | null {
  if (result.candidates.length === 0) return null;
  const same = result.candidates.find((c) => c.completion === result.completion);
  if (same) return same;
  return [...result.candidates].sort((a, b) => Number(b.passing) - Number(a.passing) || b.score - a.score)[0] ?? null;
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
