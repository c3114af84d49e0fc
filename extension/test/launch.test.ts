import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { readSettings, toInitializationOptions } from '../src/config';
import {
  LLAMA_CMAKE_ARGS,
  PROBE_SCRIPT,
  expandPath,
  installHint,
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

  it('creates a venv, then installs the wheel without extras (no torch), then the embedded model by the server itself', () => {
    const steps = installPlan({ basePython: '/usr/bin/python3', venvDir: '/g/server-venv', wheel: '/ext/collabcoder-0.1.0-py3-none-any.whl', platform: 'linux', arch: 'x64' });
    assert.deepEqual(steps[0], { title: 'Creating the virtual environment', command: '/usr/bin/python3', args: ['-m', 'venv', '--clear', '/g/server-venv'] });
    for (const s of steps.slice(1)) assert.equal(s.command, '/g/server-venv/bin/python', 'everything after the venv runs in it');
    assert.deepEqual(
      steps.slice(1).map((s) => s.args.filter((a) => !a.startsWith('--disable'))),
      [
        ['-m', 'pip', 'install', '--upgrade', 'pip'],
        ['-m', 'pip', 'install', '/ext/collabcoder-0.1.0-py3-none-any.whl'],
        ['-m', 'collabcoder.server', '--install-model'],
      ],
    );
    const all = steps.flatMap((s) => s.args).join(' ');
    assert.doesNotMatch(all, /torch|\[train\]|\[transformers\]/, 'the server profile has no torch');
  });

  it('builds llama-cpp-python portably on x86_64 only, for the server step alone', () => {
    const x64 = installPlan({ basePython: 'python3', venvDir: '/v', wheel: '/w.whl', platform: 'linux', arch: 'x64' });
    const withEnv = x64.filter((s) => s.env !== undefined);
    assert.equal(withEnv.length, 1);
    assert.ok(withEnv[0]!.args.includes('/w.whl'));
    assert.deepEqual(withEnv[0]!.env, { CMAKE_ARGS: LLAMA_CMAKE_ARGS });
    assert.equal(
      LLAMA_CMAKE_ARGS,
      '-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_BF16=OFF',
    );
    for (const arch of ['arm64', 'ppc64', 'ia32']) {
      const steps = installPlan({ basePython: 'python3', venvDir: '/v', wheel: '/w.whl', platform: 'linux', arch });
      assert.ok(steps.every((s) => s.env === undefined), `no CMAKE_ARGS on ${arch}`);
    }
  });

  it('says what to install when llama-cpp-python cannot be built', () => {
    const noCompiler = [
      '  CMake Error at CMakeLists.txt:3 (project):',
      '    No CMAKE_CXX_COMPILER could be found.',
      '  ERROR: Failed building wheel for llama-cpp-python',
      'error: failed-wheel-build-for-install',
    ].join('\n');
    const hint = installHint(noCompiler);
    assert.match(hint, /build-essential cmake/);
    assert.match(hint, /collab\.server\.pythonPath/);
    assert.match(installHint('Failed to build installable wheels for some pyproject.toml based projects (llama_cpp_python)'), /build-essential/);
    assert.match(installHint('Error: ensurepip is not available'), /python3-venv/);
    assert.equal(installHint('ERROR: Could not find a version that satisfies the requirement foo'), '');
  });

  it('uses the Windows layout on Windows', () => {
    const steps = installPlan({ basePython: 'python', venvDir: 'C:\\g\\v', wheel: 'w.whl', platform: 'win32', arch: 'x64' });
    assert.equal(steps[1]!.command, 'C:\\g\\v\\Scripts\\python.exe');
  });
});
