import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bestCandidate, candidateFor, initialState, reduce, visibleErrors, type Action, type PanelState } from '../src/panelState';
import { escapeHtml, formatMs, renderPanel } from '../src/panelView';
import type { IterationNotification, RunFeedbackResult, StatusNotification } from '../src/protocol';
import { statusBarView } from '../src/statusFormat';
import { Store } from '../src/store';

const T = 'tok-1';

const iteration = (n: number, nodeId: string, extra: Partial<IterationNotification> = {}): IterationNotification => ({
  token: T,
  iteration: n,
  nodeId,
  parentId: n > 1 ? `n${n - 1}` : null,
  completion: `return ${n}`,
  score: n / 10,
  passing: false,
  verdict: 'static checks only',
  verified: false,
  evidence: 'none',
  analyzers: [{ name: 'syntax', kind: 'critical', passed: true, score: 1, message: '', infraError: false, skipped: false }],
  ...extra,
});

const edit = (text: string) => ({ uri: 'file:///w/a.py', range: { start: { line: 3, character: 4 }, end: { line: 3, character: 4 } }, newText: text });

const result: RunFeedbackResult = {
  token: T,
  completion: 'return 2',
  passed: true,
  verdict: 'examples passed 2/2',
  verified: true,
  stopReason: 'passed',
  timeMs: 1234,
  edit: edit('return 2'),
  candidates: [
    { nodeId: 'n1', completion: 'return 1', score: 0.1, passing: false, verdict: 'failed: syntax: invalid syntax', verified: false, evidence: 'none', edit: edit('return 1') },
    { nodeId: 'n2', completion: 'return 2', score: 0.9, passing: true, verdict: 'examples passed 2/2', verified: true, evidence: 'examples', edit: edit('return 2') },
  ],
};

const status: StatusNotification = {
  state: 'idle',
  backend: 'transformers',
  model: 'smollm2-135m-instruct',
  lastLatencyMs: 850,
  lastError: null,
  shown: 4,
  accepted: 1,
};

const started: Action = { type: 'runStarted', token: T, uri: 'file:///w/a.py', label: 'a.py', line: 3, character: 4, iterations: 3, now: 1000 };

function run(...actions: Action[]): PanelState {
  return actions.reduce(reduce, initialState as PanelState);
}

describe('panel reducer', () => {
  it('follows a run from start to the accepted candidate', () => {
    let s = run({ type: 'connection', connection: 'running', serverPython: '/v/python' }, started);
    assert.equal(s.run?.phase, 'running');
    s = reduce(s, { type: 'iteration', iteration: iteration(2, 'n2') });
    s = reduce(s, { type: 'iteration', iteration: iteration(1, 'n1') });
    assert.deepEqual(
      s.run?.iterations.map((i) => i.nodeId),
      ['n1', 'n2'],
      'ordered by iteration',
    );
    s = reduce(s, { type: 'runFinished', result, now: 2000 });
    assert.equal(s.run?.phase, 'done');
    assert.equal(s.run?.finishedAt, 2000);
    s = reduce(s, { type: 'accepted', token: T, nodeId: 'n2' });
    assert.equal(s.run?.phase, 'accepted');
    assert.equal(s.run?.acceptedNodeId, 'n2');
    assert.equal(reduce(s, { type: 'accepted', token: T, nodeId: 'n1' }), s, 'a run is accepted once');
  });

  it('ignores iterations and results of other runs', () => {
    const s = run(started);
    assert.equal(reduce(s, { type: 'iteration', iteration: iteration(1, 'x', { token: 'old' }) }), s);
    assert.equal(reduce(s, { type: 'runFinished', result: { ...result, token: 'old' }, now: 1 }), s);
    assert.equal(reduce(initialState as PanelState, { type: 'iteration', iteration: iteration(1, 'x') }), initialState);
  });

  it('replaces a repeated notification for the same node', () => {
    const s = run(started, { type: 'iteration', iteration: iteration(1, 'n1') }, { type: 'iteration', iteration: iteration(1, 'n1', { score: 0.5 }) });
    assert.equal(s.run?.iterations.length, 1);
    assert.equal(s.run?.iterations[0]?.score, 0.5);
  });

  it('drops iterations that arrive after the run ended', () => {
    const s = run(started, { type: 'runFinished', result, now: 2 });
    assert.equal(reduce(s, { type: 'iteration', iteration: iteration(4, 'late') }), s);
  });

  it('discards only a finished run', () => {
    assert.equal(run(started, { type: 'discarded', token: T }).run?.phase, 'running');
    assert.equal(run(started, { type: 'runFinished', result, now: 2 }, { type: 'discarded', token: T }).run?.phase, 'discarded');
  });

  it('records failures in the run and in the error list', () => {
    const s = run(started, { type: 'runFailed', token: T, error: 'boom', now: 5 });
    assert.equal(s.run?.phase, 'failed');
    assert.equal(s.run?.error, 'boom');
    assert.deepEqual(s.clientErrors, ['boom']);
  });

  it('cancels a running run', () => {
    assert.equal(run(started, { type: 'runCancelled', token: T, now: 5 }).run?.phase, 'cancelled');
  });

  it('fails a running run when the server goes away', () => {
    const s = run({ type: 'connection', connection: 'running' }, started, { type: 'connection', connection: 'starting' });
    assert.equal(s.run?.phase, 'failed');
    assert.match(s.run?.error ?? '', /server stopped/);
  });

  it('keeps the last ten errors, newest first, without repeats', () => {
    let s = initialState as PanelState;
    for (let i = 0; i < 12; i++) s = reduce(s, { type: 'clientError', message: `e${i}` });
    s = reduce(s, { type: 'clientError', message: 'e5' });
    assert.equal(s.clientErrors.length, 10);
    assert.equal(s.clientErrors[0], 'e5');
    assert.equal(s.clientErrors.filter((e) => e === 'e5').length, 1);
  });

  it('takes counts from status notifications over older stats', () => {
    let s = run({ type: 'stats', stats: { shown: 1, accepted: 0, acceptanceRate: 0, lastErrors: ['server: x'] } });
    s = reduce(s, { type: 'status', status: { ...status, lastError: 'latest' } });
    assert.equal(s.stats?.shown, 4);
    assert.equal(s.stats?.acceptanceRate, 0.25);
    assert.deepEqual(visibleErrors(s), ['latest', 'server: x']);
  });
});

describe('bestCandidate / candidateFor', () => {
  it("is the candidate whose text is the run's completion", () => {
    assert.equal(bestCandidate(result)?.nodeId, 'n2');
    assert.equal(candidateFor(result, 'best')?.nodeId, 'n2');
    assert.equal(candidateFor(result, 'n1')?.nodeId, 'n1');
    assert.equal(candidateFor(result, 'nope'), null);
  });

  it('else the passing one with the best score', () => {
    const r = {
      ...result,
      completion: 'something else',
      candidates: [
        { ...result.candidates[0]!, nodeId: 'a', score: 0.99, passing: false },
        { ...result.candidates[0]!, nodeId: 'b', score: 0.5, passing: true },
        { ...result.candidates[0]!, nodeId: 'c', score: 0.7, passing: true },
      ],
    };
    assert.equal(bestCandidate(r)?.nodeId, 'c');
    assert.equal(bestCandidate({ ...r, candidates: [] }), null);
  });

  it('puts a verified candidate before any higher-scored unverified one', () => {
    const base = result.candidates[0]!;
    const r = {
      ...result,
      completion: 'something else',
      candidates: [
        { ...base, nodeId: 'static', score: 9.5, passing: true, verdict: 'static checks only', verified: false },
        { ...base, nodeId: 'checked', score: 1.2, passing: true, verdict: 'tests passed 1/1', verified: true, evidence: 'tests' as const },
        { ...base, nodeId: 'blocked', score: 20, passing: false, verdict: 'failed: mypy: x', verified: false },
      ],
    };
    assert.equal(bestCandidate(r)?.nodeId, 'checked');
    assert.equal(bestCandidate({ ...r, candidates: r.candidates.filter((c) => c.nodeId !== 'checked') })?.nodeId, 'static', 'then not blocked');
  });
});

describe('renderPanel', () => {
  it('shows the iterations with their analyzers, scores and the accept buttons once done', () => {
    const s = run(
      { type: 'connection', connection: 'running' },
      { type: 'status', status },
      started,
      { type: 'iteration', iteration: iteration(1, 'n1', { analyzers: [{ name: 'mypy', kind: 'critical', passed: false, score: 0, message: 'line 1: incompatible return', infraError: false, skipped: false }] }) },
      { type: 'iteration', iteration: iteration(2, 'n2', { passing: true, score: 0.9 }) },
    );
    const running = renderPanel(s, 0);
    assert.equal((running.match(/data-testid="iteration"/g) ?? []).length, 2);
    assert.match(running, /line 1: incompatible return/);
    assert.match(running, /score 0\.90/);
    assert.match(running, /data-action="cancel"/);
    assert.doesNotMatch(running, /data-action="accept"/, 'nothing to accept while running');

    const done = renderPanel(reduce(s, { type: 'runFinished', result, now: 2 }), 0);
    assert.match(done, /data-action="accept" data-node="best"/);
    assert.match(done, /data-action="accept" data-node="n1"/);
    assert.match(done, /data-action="discard"/);
    assert.match(done, /class="iteration best" data-testid="iteration" data-node="n2"/);
    assert.match(done, /Run at a\.py:4:5/);
  });

  it('escapes model output', () => {
    const s = run(started, { type: 'iteration', iteration: iteration(1, 'n"1', { completion: '</pre><script>alert(1)</script>' }) });
    const html = renderPanel(s, 0);
    assert.ok(!html.includes('<script>'));
    assert.match(html, /&lt;\/pre&gt;&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
    assert.match(html, /data-node="n&quot;1"/);
    assert.equal(escapeHtml(`<&>"'`), '&lt;&amp;&gt;&quot;&#39;');
  });

  it('shows status, counts and errors', () => {
    const s = run({ type: 'connection', connection: 'running' }, { type: 'status', status: { ...status, state: 'error', lastError: 'endpoint refused' } });
    const html = renderPanel(s, 0);
    assert.match(html, /data-testid="state">error</);
    assert.match(html, /transformers &middot; smollm2-135m-instruct &middot; last 850 ms/);
    assert.match(html, /Shown 4 &middot; Accepted 1 \(25%\)/);
    assert.match(html, /Last errors.*endpoint refused/s);
    assert.doesNotMatch(html, /Panel runs/);
    const withRuns = run({ type: 'stats', stats: { shown: 4, accepted: 1, acceptanceRate: 0.25, lastErrors: [], panelRuns: 3, panelAccepted: 2 } });
    assert.match(renderPanel(withRuns, 0), /Accepted 1 \(25%\) &middot; Panel runs applied 2\/3/);
  });
});

describe('statusBarView', () => {
  it('shows state, backend/model and the last latency', () => {
    const s = run({ type: 'connection', connection: 'running' }, { type: 'status', status });
    assert.equal(statusBarView(s).text, '$(sparkle) Collab: idle · transformers/smollm2-135m-instruct · 850 ms');
    const working = reduce(s, { type: 'status', status: { ...status, state: 'working', lastLatencyMs: 12_500 } });
    assert.equal(statusBarView(working).text, '$(sync~spin) Collab: working · transformers/smollm2-135m-instruct · 13 s');
    const err = statusBarView(reduce(s, { type: 'status', status: { ...status, state: 'error', lastError: 'timeout' } }));
    assert.equal(err.severity, 'error');
    assert.match(err.tooltip, /Last error: timeout/);
  });

  it('shows the connection before the server reports', () => {
    assert.equal(statusBarView(initialState as PanelState).text, '$(circle-slash) Collab: stopped');
    assert.equal(statusBarView(run({ type: 'connection', connection: 'starting' })).text, '$(loading~spin) Collab: starting');
    assert.equal(statusBarView(run({ type: 'connection', connection: 'failed' })).severity, 'error');
    assert.equal(statusBarView(run({ type: 'connection', connection: 'running' })).text, '$(loading~spin) Collab: starting', 'running, no collab/status yet');
  });

  it('says when inline completions are off', () => {
    const s = run({ type: 'connection', connection: 'running' }, { type: 'status', status }, { type: 'inlineEnabled', enabled: false });
    assert.match(statusBarView(s).text, /^\$\(circle-slash\) Collab: off/);
  });

  it('formats durations', () => {
    assert.equal(formatMs(null), '-');
    assert.equal(formatMs(999.6), '1000 ms');
    assert.equal(formatMs(1500), '1.5 s');
  });
});

describe('Store', () => {
  it('notifies subscribers of changes only', () => {
    const store = new Store();
    const seen: string[] = [];
    const sub = store.subscribe((s) => seen.push(s.connection));
    store.dispatch({ type: 'connection', connection: 'starting' });
    store.dispatch({ type: 'iteration', iteration: iteration(1, 'x') }); // no run: no change
    sub.dispose();
    store.dispatch({ type: 'connection', connection: 'running' });
    assert.deepEqual(seen, ['starting']);
    assert.equal(store.state.connection, 'running');
  });
});
