// The editor <-> server contract (docs/protocol.md), as types and names. No `vscode` import:
// unit tests and the webview renderer use it too.

/** Commands the server executes (`workspace/executeCommand`). */
export const SERVER_COMMANDS = {
  runFeedbackIterations: 'collab.runFeedbackIterations',
  acceptCompletion: 'collab.acceptCompletion',
  getStats: 'collab.getStats',
} as const;

/** Notifications between server and client. */
export const NOTIFICATIONS = {
  status: 'collab/status',
  iteration: 'collab/iteration',
  setApiKey: 'collab/setApiKey',
} as const;

export type BackendKind = 'llamacpp' | 'transformers' | 'openai' | 'vllm';
export const BACKEND_KINDS: readonly BackendKind[] = ['llamacpp', 'transformers', 'openai', 'vllm'];

export const FIM_TEMPLATES = [
  'auto',
  'qwen2.5-coder',
  'starcoder2',
  'deepseek-coder',
  'codellama',
  'none',
] as const;
export type FimTemplate = (typeof FIM_TEMPLATES)[number];

export type ServerState = 'idle' | 'working' | 'error';

/** `collab/status` */
export interface StatusNotification {
  state: ServerState;
  backend: string;
  model: string;
  lastLatencyMs: number | null;
  lastError: string | null;
  shown: number;
  accepted: number;
  /** Verdict of the last suggestion the server judged (inline, or the best of a panel run). */
  lastVerdict?: string | null;
}

/**
 * The strongest kind of behaviour checked for a candidate. `none`: only static checks ran, which
 * never makes a candidate verified (docs/protocol.md, "Verdicts").
 */
export type Evidence = 'none' | 'asserts' | 'examples' | 'tests';
export const EVIDENCE_KINDS: readonly Evidence[] = ['none', 'asserts', 'examples', 'tests'];

/**
 * What every judged candidate carries. `verdict` is the honest words shown everywhere
 * (`tests passed 3/3`, `examples passed 2/2`, `asserts passed 1/1`, `static checks only`,
 * `failed: <reason>`); `verified`: behaviour was checked, all of it passed and no critical
 * analyzer blocks. The wire's `passing` only means "no critical analyzer blocks" (LLMcoder's
 * meaning) and is never shown as a pass.
 */
export interface Verdict {
  verdict: string;
  verified: boolean;
  evidence: Evidence;
}

export interface AnalyzerReport {
  name: string;
  kind: string;
  passed: boolean;
  score: number | null;
  message: string;
  infraError: boolean;
  skipped: boolean;
}

/** `collab/iteration`: one judged candidate of a run. */
export interface IterationNotification extends Verdict {
  token: string;
  iteration: number;
  nodeId: string;
  parentId: string | null;
  completion: string;
  score: number;
  /** No critical analyzer blocks; not a verdict (see `Verdict`). */
  passing: boolean;
  analyzers: AnalyzerReport[];
}

export interface Position {
  line: number;
  character: number;
}

export interface Range {
  start: Position;
  end: Position;
}

export interface TextEditDto {
  uri: string;
  range: Range;
  newText: string;
}

export interface RunCandidate extends Verdict {
  nodeId: string;
  completion: string;
  /** Evidence first, then the static analyzers (docs/loop.md). */
  score: number;
  /** No critical analyzer blocks; not a verdict. */
  passing: boolean;
  edit: TextEditDto;
}

/** Argument of `collab.runFeedbackIterations`. */
export interface RunFeedbackArgs {
  uri: string;
  position: Position;
  iterations?: number;
  token: string;
}

/** Result of `collab.runFeedbackIterations`. */
export interface RunFeedbackResult {
  token: string;
  completion: string;
  passed: boolean;
  /** The verdict of the chosen completion, and whether it is verified. */
  verdict: string;
  verified: boolean;
  /** `passed` (a verified candidate), `static_only`, `max_iter`, `time_budget`, `backend_error`. */
  stopReason: string;
  timeMs: number;
  edit: TextEditDto | null;
  candidates: RunCandidate[];
}

/** Result of `collab.getStats`. */
export interface StatsResult {
  shown: number;
  accepted: number;
  acceptanceRate: number;
  lastErrors: string[];
  /** Status-panel runs that returned candidates, and those whose candidate was applied. */
  panelRuns?: number;
  panelAccepted?: number;
  /** As in `collab/status`. */
  lastVerdict?: string | null;
}

/** `collab/setApiKey` */
export interface SetApiKeyParams {
  apiKey: string | null;
}
