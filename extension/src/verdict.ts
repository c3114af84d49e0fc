// The honest verdict of a candidate, as the panel and the status bar show it. No `vscode` import:
// unit tests use it too.
//
// Only `verified` (behaviour ran and all of it passed, nothing critical blocks) is ever shown as
// a pass, in green. `static checks only` is neutral, `failed: ...` red. The wire's `passing`
// ("no critical analyzer blocks") is never shown as a pass: it would call `return 1.0` correct.

import { EVIDENCE_KINDS, type Evidence, type Verdict } from './protocol';

export type VerdictTone = 'ok' | 'bad' | 'neutral';

/** The words shown when the server sent no verdict (a server older than the verdict fields). */
export const NO_VERDICT = 'no verdict';
export const STATIC_ONLY = 'static checks only';

export function isFailure(verdict: string): boolean {
  return verdict.startsWith('failed');
}

/**
 * Green only for a verified candidate; red for a failure; anything else is neutral. A verdict
 * that names no behaviour is never green, whatever `verified` says.
 */
export function verdictTone(v: Pick<Verdict, 'verdict' | 'verified'>): VerdictTone {
  if (isFailure(v.verdict)) return 'bad';
  return v.verified && v.verdict !== STATIC_ONLY && v.verdict !== NO_VERDICT ? 'ok' : 'neutral';
}

/**
 * The verdict fields of a wire object, with what a server may leave out filled in so that it
 * can never read as a pass: no `verified` is false, no `evidence` is `none`.
 */
export function withVerdict<T extends object>(x: T & Partial<Verdict>): T & Verdict {
  const evidence: Evidence = EVIDENCE_KINDS.includes(x.evidence as Evidence) ? (x.evidence as Evidence) : 'none';
  return {
    ...x,
    verdict: typeof x.verdict === 'string' && x.verdict !== '' ? x.verdict : NO_VERDICT,
    verified: x.verified === true,
    evidence,
  };
}

/** What a verdict means, for tooltips. */
export function verdictMeaning(v: Pick<Verdict, 'verdict' | 'verified'>): string {
  if (isFailure(v.verdict)) return 'a check failed';
  if (verdictTone(v) === 'ok') return 'behaviour checked and passed';
  if (v.verdict === STATIC_ONLY) return 'no tests, examples or asserts ran: not a pass';
  return 'not verified';
}

/** A verdict cut to `max` characters for narrow places (the status bar). */
export function shortVerdict(verdict: string, max = 40): string {
  return verdict.length <= max ? verdict : `${verdict.slice(0, max - 1)}…`;
}

const STOP_REASONS: Record<string, string> = {
  passed: 'a verified candidate',
  static_only: 'nothing behavioural to run',
  max_iter: 'the iteration limit',
  time_budget: 'the time budget',
  backend_error: 'a backend error',
};

/** Why a run stopped, in words (unknown reasons as sent). */
export function stopReasonText(reason: string): string {
  return STOP_REASONS[reason] ?? reason;
}
