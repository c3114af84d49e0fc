import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DEFAULTS,
  documentSelector,
  needsRestart,
  readSettings,
  toInitializationOptions,
  toServerSettings,
  type SettingReader,
} from '../src/config';

/** A reader over a flat map of `collab.`-relative keys, like VS Code's getConfiguration('collab').get. */
const reader =
  (values: Record<string, unknown>): SettingReader =>
  (key) =>
    values[key];

describe('readSettings', () => {
  it('gives the protocol defaults when nothing is set', () => {
    const { settings, problems } = readSettings(reader({}));
    assert.deepEqual(settings, DEFAULTS);
    assert.deepEqual(problems, []);
  });

  it('reads every key, dotted ones included', () => {
    const { settings, problems } = readSettings(
      reader({
        backend: 'openai',
        endpointUrl: ' http://127.0.0.1:8000/v1 ',
        model: 'qwen',
        fimTemplate: 'starcoder2',
        analyzers: ['syntax', 'syntax', ' mypy '],
        maxIterations: 5,
        latencyBudgetMs: 900,
        debounceMs: 0,
        enabledLanguages: ['python', 'typescript'],
        'inlineCompletions.enabled': false,
        pythonPath: '/p/bin/python',
        'server.pythonPath': '/s/bin/python',
        'server.logLevel': 'debug',
      }),
    );
    assert.deepEqual(problems, []);
    assert.equal(settings.backend, 'openai');
    assert.equal(settings.endpointUrl, 'http://127.0.0.1:8000/v1');
    assert.deepEqual(settings.analyzers, ['syntax', 'mypy']);
    assert.equal(settings.inlineCompletionsEnabled, false);
    assert.equal(settings.serverPythonPath, '/s/bin/python');
    assert.equal(settings.serverLogLevel, 'debug');
  });

  it('falls back to the default on a wrong value and says what would be right', () => {
    const { settings, problems } = readSettings(reader({ backend: 'OpenAi', fimTemplate: 'starcoder', maxIterations: 0, debounceMs: 'fast' }));
    assert.equal(settings.backend, 'llamacpp');
    assert.equal(settings.fimTemplate, 'auto');
    assert.equal(settings.maxIterations, 1, 'clamped into its range');
    assert.equal(settings.debounceMs, DEFAULTS.debounceMs);
    assert.match(problems[0]!, /collab\.backend is "OpenAi".*did you mean 'openai'/);
    assert.match(problems[1]!, /collab\.fimTemplate .*did you mean 'starcoder2'/);
    assert.match(problems[2]!, /collab\.maxIterations is 0; it must be between 1 and 50; using 1/);
    assert.match(problems[3]!, /collab\.debounceMs must be a number/);
  });

  it('reports an openai backend without an endpoint', () => {
    const { problems } = readSettings(reader({ backend: 'openai' }));
    assert.match(problems[0]!, /collab\.endpointUrl is empty/);
  });

  it('reports an endpoint that is not a URL', () => {
    const { problems } = readSettings(reader({ backend: 'openai', endpointUrl: 'localhost:8000' }));
    assert.match(problems[0]!, /not an http\(s\) URL/);
  });

  it('keeps an empty model from reaching the server', () => {
    assert.equal(readSettings(reader({ model: '  ' })).settings.model, DEFAULTS.model);
  });
});

describe('toServerSettings / toInitializationOptions', () => {
  const { settings } = readSettings(reader({ backend: 'openai', endpointUrl: 'http://h/v1', 'server.pythonPath': '/srv/python' }));

  it('uses the protocol keys, nests the dotted one, and keeps the editor-only ones out', () => {
    const s = toServerSettings(settings);
    assert.deepEqual(Object.keys(s).sort(), [
      'analyzers',
      'backend',
      'debounceMs',
      'enabledLanguages',
      'endpointUrl',
      'fimTemplate',
      'inlineCompletions',
      'latencyBudgetMs',
      'maxIterations',
      'maxTokens',
      'model',
      'pythonPath',
    ]);
    assert.deepEqual(s.inlineCompletions, { enabled: true });
    assert.ok(!JSON.stringify(s).includes('/srv/python'), "the server's own interpreter is not a server setting");
  });

  it("fills pythonPath from the Python extension's interpreter only when the user set none", () => {
    assert.equal(toServerSettings(settings, '/active/python').pythonPath, '/active/python');
    const own = readSettings(reader({ pythonPath: '/mine/python' })).settings;
    assert.equal(toServerSettings(own, '/active/python').pythonPath, '/mine/python');
    assert.equal(toServerSettings(own).pythonPath, '/mine/python');
    assert.equal(toServerSettings(DEFAULTS, null).pythonPath, '');
  });

  it('adds the API key to initializationOptions, null when there is none', () => {
    assert.equal(toInitializationOptions(settings, 'sk-123').apiKey, 'sk-123');
    assert.equal(toInitializationOptions(settings, '').apiKey, null);
    assert.equal(toInitializationOptions(settings, undefined).apiKey, null);
    const { apiKey: _k, ...rest } = toInitializationOptions(settings, 'sk-123', '/a/python');
    assert.deepEqual(rest, toServerSettings(settings, '/a/python'), 'the same settings as workspace/configuration');
  });

  it('gives copies, not the settings object itself', () => {
    const s = toServerSettings(settings);
    s.analyzers.push('tests');
    assert.ok(!settings.analyzers.includes('tests'));
  });
});

describe('needsRestart / documentSelector', () => {
  it('restarts for the interpreter, the log level and the languages only', () => {
    assert.equal(needsRestart((k) => k === 'collab.server.pythonPath'), true);
    assert.equal(needsRestart((k) => k === 'collab.enabledLanguages'), true);
    assert.equal(needsRestart((k) => k === 'collab.model'), false);
    assert.equal(needsRestart((k) => k === 'collab.inlineCompletions.enabled'), false);
  });

  it('selects files and untitled documents of each language', () => {
    assert.deepEqual(documentSelector(['python']), [
      { scheme: 'file', language: 'python' },
      { scheme: 'untitled', language: 'python' },
    ]);
  });
});
