// Honest verdicts in the panel and the status bar (issue 12, part 3): only a behaviour-verified
// candidate is green; `static checks only` is neutral and never called passing; `failed: ...` is
// red; the wire's `passing` (no critical analyzer blocks) is never shown as a pass.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { initialState, lastVerdict, normalizeResult, reduce, type Action, type PanelState } from '../src/panelState';
import { renderPanel } from '../src/panelView';
import type { AnalyzerReport, IterationNotification, RunFeedbackResult, StatusNotification } from '../src/protocol';
import { statusBarView, verdictBadge } from '../src/statusFormat';
import { NO_VERDICT, shortVerdict, stopReasonText, verdictTone, withVerdict } from '../src/verdict';

const T = 'tok-v';
const started: Action = { type: 'runStarted', token: T, uri: 'file:///w/demo.py', label: 'demo.py', line: 9, character: 11, iterations: 2, now: 0 };

const analyzer = (name: string, passed: boolean, kind = 'critical'): AnalyzerReport => ({
  name,
  kind,
  passed,
  score: passed ? 1 : 0,
  message: '',
  infraError: false,
  skipped: false,
});
const STATIC = [analyzer('syntax', true), analyzer('signature', true, 'advisory'), analyzer('hallucination', true, 'advisory')];

const iteration = (nodeId: string, extra: Partial<IterationNotification>): IterationNotification => ({
  token: T,
  iteration: 1,
  nodeId,
  parentId: null,
  completion: 'celsius * 9 / 5 + 32',
  score: 1,
  passing: true,
  verdict: 'static checks only',
  verified: false,
  evidence: 'none',
  analyzers: STATIC,
  ...extra,
});

const edit = { uri: 'file:///w/demo.py', range: { start: { line: 9, character: 11 }, end: { line: 9, character: 11 } }, newText: 'x' };

function state(...actions: Action[]): PanelState {
  return actions.reduce(reduce, initialState as PanelState);
}

/** The `<li>` of one iteration in the panel's HTML. */
function itemOf(html: string, nodeId: string): string {
  const m = new RegExp(`<li class="iteration[^"]*" data-testid="iteration" data-node="${nodeId}">(.*?)</li></ul></li>`, 's').exec(html);
  assert.ok(m, `iteration ${nodeId} is rendered`);
  return m[1]!;
}

/** Class lists of everything coloured in a piece of HTML. */
const greens = (html: string): string[] => [...html.matchAll(/class="([^"]*\bok\b[^"]*)"/g)].map((m) => m[1]!);

describe('verdict tone and words', () => {
  it('is green only when verified, red for failures, neutral otherwise', () => {
    assert.equal(verdictTone({ verdict: 'tests passed 3/3', verified: true }), 'ok');
    assert.equal(verdictTone({ verdict: 'examples passed 2/2', verified: false }), 'neutral', 'not verified: not green');
    assert.equal(verdictTone({ verdict: 'static checks only', verified: false }), 'neutral');
    assert.equal(verdictTone({ verdict: 'static checks only', verified: true }), 'neutral', 'never green, whatever verified says');
    assert.equal(verdictTone({ verdict: 'failed: test_mean: assert 0.0 == 2.0', verified: false }), 'bad');
  });

  it('fills in what a server leaves out so that it never reads as a pass', () => {
    const old = withVerdict({ nodeId: 'n1', passing: true });
    assert.deepEqual([old.verdict, old.verified, old.evidence], [NO_VERDICT, false, 'none']);
    assert.equal(verdictTone(old), 'neutral');
    const odd = withVerdict({ verdict: 'tests passed 1/1', verified: 'yes' as unknown as boolean, evidence: 'vibes' as never });
    assert.deepEqual([odd.verified, odd.evidence], [false, 'none']);
  });

  it('names why a run stopped and shortens long verdicts', () => {
    assert.equal(stopReasonText('passed'), 'a verified candidate');
    assert.equal(stopReasonText('static_only'), 'nothing behavioural to run');
    assert.equal(stopReasonText('something_new'), 'something_new');
    assert.equal(shortVerdict('x'.repeat(50), 10), `${'x'.repeat(9)}…`);
  });

  it('normalizes a run result, candidates included', () => {
    const r = normalizeResult({ completion: 'x', passed: true, candidates: [{ nodeId: 'a', completion: 'x', score: 5, passing: true, edit } as never] }, T);
    assert.equal(r.verdict, NO_VERDICT);
    assert.equal(r.verified, false);
    assert.equal(r.candidates[0]?.verified, false);
    assert.equal(r.candidates[0]?.evidence, 'none');
    assert.equal(normalizeResult(null, T).candidates.length, 0);
  });
});

describe('the panel shows verdicts, not `passing`', () => {
  const examples = iteration('n1', {
    verdict: 'examples passed 2/2',
    verified: true,
    evidence: 'examples',
    analyzers: [...STATIC, analyzer('behaviour', true, 'info')],
  });
  const staticOnly = iteration('n2', { iteration: 2, score: 5, analyzers: [...STATIC, analyzer('behaviour', true, 'info')] });
  const failed = iteration('n3', {
    iteration: 3,
    passing: true, // no critical analyzer blocks, yet the examples fail
    verdict: 'failed: celsius_to_fahrenheit(0): expected 32.0, got 0',
    evidence: 'examples',
    analyzers: [...STATIC, analyzer('behaviour', false, 'info')],
  });
  const s = state(
    started,
    { type: 'iteration', iteration: examples },
    { type: 'iteration', iteration: staticOnly },
    { type: 'iteration', iteration: failed },
  );
  const html = renderPanel(s, 0);

  it('gives each candidate its verdict words, green only when verified', () => {
    const ok = itemOf(html, 'n1');
    assert.match(ok, /<span class="tag verdict ok" data-testid="verdict" data-verified="true" title="behaviour checked and passed">examples passed 2\/2<\/span>/);
    assert.match(ok, /<span class="name">behaviour<\/span> <span class="muted">info<\/span> <span class="ok">passed<\/span>/, 'behaviour that ran is green');
    assert.match(ok, /<span class="name">syntax<\/span> <span class="muted">critical<\/span> <span class="neutral">passed<\/span>/, 'a static check is not');
  });

  it('shows a statically checked candidate as `static checks only`, in no green, never as passing', () => {
    const st = itemOf(html, 'n2');
    assert.match(st, /<span class="tag verdict neutral" data-testid="verdict" data-verified="false"[^>]*>static checks only<\/span>/);
    assert.deepEqual(greens(st), [], 'nothing green: not the tag, not the static analyzers, not a behaviour row with nothing run');
    assert.doesNotMatch(html, /passing/, 'the word `passing` is not shown anywhere');
  });

  it('shows a failure in red with its reason', () => {
    const bad = itemOf(html, 'n3');
    assert.match(bad, /class="tag verdict bad"[^>]*>failed: celsius_to_fahrenheit\(0\): expected 32\.0, got 0</);
    assert.match(bad, /behaviour<\/span> <span class="muted">info<\/span> <span class="bad">failed/);
  });

  it("says the chosen completion's verdict when the run is done", () => {
    const result: RunFeedbackResult = {
      token: T,
      completion: 'celsius * 9 / 5 + 32',
      passed: true,
      verdict: 'examples passed 2/2',
      verified: true,
      stopReason: 'passed',
      timeMs: 2500,
      edit,
      candidates: [
        { nodeId: 'n1', completion: examples.completion, score: 101, passing: true, verdict: examples.verdict, verified: true, evidence: 'examples', edit },
        { nodeId: 'n2', completion: 'other', score: 5, passing: true, verdict: 'static checks only', verified: false, evidence: 'none', edit },
      ],
    };
    const done = renderPanel(reduce(s, { type: 'runFinished', result, now: 1 }), 0);
    assert.match(done, /data-testid="run-phase">done: examples passed 2\/2, stopped by a verified candidate, 2\.5 s</);
    assert.match(done, /best: node n1, score 101\.00<\/span> <span class="tag verdict ok"[^>]*>examples passed 2\/2</);

    const staticRun = { ...result, completion: 'other', passed: true, verdict: 'static checks only', verified: false, stopReason: 'static_only' };
    const st = renderPanel(reduce(s, { type: 'runFinished', result: staticRun, now: 1 }), 0);
    assert.match(st, /done: static checks only, stopped by nothing behavioural to run/);
    assert.doesNotMatch(st, /done: passed|, passing/, 'the wire\'s `passed: true` is not shown');
    assert.match(st, /best: node n2, score 5\.00<\/span> <span class="tag verdict neutral"/);
  });

  it('shows an applied candidate without turning it green', () => {
    const result: RunFeedbackResult = {
      token: T,
      completion: 'other',
      passed: true,
      verdict: 'static checks only',
      verified: false,
      stopReason: 'static_only',
      timeMs: 1,
      edit,
      candidates: [{ nodeId: 'n2', completion: 'other', score: 5, passing: true, verdict: 'static checks only', verified: false, evidence: 'none', edit }],
    };
    const applied = reduce(reduce(s, { type: 'runFinished', result, now: 1 }), { type: 'accepted', token: T, nodeId: 'n2' });
    const item = itemOf(renderPanel(applied, 0), 'n2');
    assert.match(item, /<span class="tag applied">applied<\/span>/);
    assert.deepEqual(greens(item), []);
  });

  it('keeps verdicts of iterations from a server that sends none honest', () => {
    const { verdict: _v, verified: _f, evidence: _e, ...bare } = iteration('old', {});
    const html2 = renderPanel(state(started, { type: 'iteration', iteration: bare as IterationNotification }), 0);
    assert.match(itemOf(html2, 'old'), /class="tag verdict neutral" data-testid="verdict" data-verified="false"[^>]*>no verdict</);
  });
});

describe('the status bar shows the last verdict', () => {
  const status: StatusNotification = {
    state: 'idle',
    backend: 'llamacpp',
    model: 'smollm2-135m-instruct',
    lastLatencyMs: 850,
    lastError: null,
    shown: 2,
    accepted: 1,
    lastVerdict: 'tests passed 3/3',
  };
  const running = (st: StatusNotification): PanelState => state({ type: 'connection', connection: 'running' }, { type: 'status', status: st });

  it('in its text and tooltip, with a check mark only for behaviour that passed', () => {
    const v = statusBarView(running(status));
    assert.equal(v.text, '$(sparkle) Collab: idle · llamacpp/smollm2-135m-instruct · 850 ms · $(pass) tests passed 3/3');
    assert.match(v.tooltip, /^Last verdict: tests passed 3\/3 \(behaviour checked and passed\)$/m);
  });

  it('never as a pass when only static checks ran', () => {
    const v = statusBarView(running({ ...status, lastVerdict: 'static checks only' }));
    assert.match(v.text, / · \$\(circle-outline\) static checks only$/);
    assert.doesNotMatch(v.text, /\$\(pass\)|\$\(check\)|passed/);
    assert.match(v.tooltip, /Last verdict: static checks only \(no tests, examples or asserts ran: not a pass\)/);
  });

  it('shortens a failure in the text and keeps its reason in the tooltip', () => {
    const reason = 'failed: test_running_sum_empty: IndexError: list index out of range';
    const v = statusBarView(running({ ...status, lastVerdict: reason }));
    assert.match(v.text, / · \$\(error\) failed: test_running_sum_empty:…$/);
    assert.match(v.tooltip, new RegExp(`^Last verdict: ${reason.replace(/[()]/g, '\\$&')}$`, 'm'));
  });

  it('shows nothing before the server judged anything, and reads getStats too', () => {
    assert.equal(verdictBadge(null), '');
    const none = statusBarView(running({ ...status, lastVerdict: null }));
    assert.doesNotMatch(none.text + none.tooltip, /verdict|passed/i);
    const s = reduce(running({ ...status, lastVerdict: undefined }), {
      type: 'stats',
      stats: { shown: 2, accepted: 1, acceptanceRate: 0.5, lastErrors: [], lastVerdict: 'examples passed 2/2' },
    });
    assert.equal(lastVerdict(s), 'examples passed 2/2');
    // A newer status replaces the stats' verdict.
    assert.equal(lastVerdict(reduce(s, { type: 'status', status: { ...status, lastVerdict: 'static checks only' } })), 'static checks only');
    assert.equal(verdictBadge('tests passed 2/3'), 'tests passed 2/3', 'a partial pass gets no check mark');
  });
});
