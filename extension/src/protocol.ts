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
export interface IterationNotification {
  token: string;
  iteration: number;
  nodeId: string;
  parentId: string | null;
  completion: string;
  score: number;
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

export interface RunCandidate {
  nodeId: string;
  completion: string;
  score: number;
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
}

/** `collab/setApiKey` */
export interface SetApiKeyParams {
  apiKey: string | null;
}
