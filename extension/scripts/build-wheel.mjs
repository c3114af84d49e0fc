// Builds the server wheel (the repository's Python distribution, `collabcoder`) into
// extension/dist/wheels, where the .vsix picks it up.
//   node extension/scripts/build-wheel.mjs          (python: $COLLAB_PYTHON, else .venv, else python3)
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const out = path.join(repo, 'extension', 'dist', 'wheels');
const venvPython = path.join(repo, '.venv', process.platform === 'win32' ? 'Scripts/python.exe' : 'bin/python');
const python = process.env.COLLAB_PYTHON || (fs.existsSync(venvPython) ? venvPython : 'python3');

function run(args) {
  console.log(`$ ${python} ${args.join(' ')}`);
  return spawnSync(python, args, { cwd: repo, stdio: 'inherit' }).status === 0;
}

fs.rmSync(out, { recursive: true, force: true });
// setuptools stages modules in build/lib and never deletes them there: a module removed from
// the tree would still be shipped in the wheel. Start from an empty staging folder.
fs.rmSync(path.join(repo, 'build', 'lib'), { recursive: true, force: true });
fs.mkdirSync(out, { recursive: true });

// Without build isolation when this interpreter has the build backend (fast, offline);
// otherwise pip fetches setuptools into an isolated build environment.
const hasBackend =
  spawnSync(python, ['-c', 'import setuptools, wheel; assert int(setuptools.__version__.split(".")[0]) >= 77'], { stdio: 'ignore' })
    .status === 0;
const base = ['-m', 'pip', 'wheel', '--no-deps', '--disable-pip-version-check', '-q', '-w', out, repo];
const ok = hasBackend ? run([...base.slice(0, 3), '--no-build-isolation', ...base.slice(3)]) : run(base);
if (!ok) {
  console.error(`building the server wheel with ${python} failed`);
  process.exit(1);
}

const wheels = fs.readdirSync(out).filter((f) => /^collabcoder-.*\.whl$/.test(f));
if (wheels.length !== 1) {
  console.error(`expected one collabcoder wheel in ${out}, found: ${wheels.join(', ') || 'none'}`);
  process.exit(1);
}
// The wheel must hold every module of the server and the analyzers (`python -m
// collabcoder.server` imports them): a package missing from pyproject.toml's list would only
// show up as an ImportError on the user's machine.
const listing = spawnSync(
  python,
  ['-c', 'import sys, zipfile; print("\\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))', path.join(out, wheels[0])],
  { encoding: 'utf8' },
);
const names = new Set(listing.stdout.split('\n'));
const missing = [];
for (const [folder, pkg] of [['server', 'collabcoder/server'], ['analyzers', 'collabcoder/analyzers']]) {
  const walk = (dir) => {
    for (const e of fs.readdirSync(path.join(repo, dir), { withFileTypes: true })) {
      const rel = path.join(dir, e.name);
      if (e.isDirectory() && e.name !== '__pycache__') walk(rel);
      else if (e.isFile() && e.name.endsWith('.py')) {
        const inWheel = pkg + rel.slice(folder.length).split(path.sep).join('/');
        if (!names.has(inWheel)) missing.push(`${rel} (${inWheel})`);
      }
    }
  };
  walk(folder);
}
if (!names.has('collabcoder/server/__main__.py')) missing.unshift('server/__main__.py (the entry point)');
if (missing.length > 0) {
  const msg = `${wheels[0]} lacks ${missing.length} module(s) the server needs, e.g. ${missing.slice(0, 5).join(', ')}; ` +
    "add their packages to [tool.setuptools] packages in pyproject.toml";
  if (process.env.COLLAB_ALLOW_INCOMPLETE_WHEEL) console.warn(`warning: ${msg}`);
  else {
    console.error(`${msg} (COLLAB_ALLOW_INCOMPLETE_WHEEL=1 packages it anyway)`);
    process.exit(1);
  }
}
console.log(`server wheel: ${path.relative(repo, path.join(out, wheels[0]))}`);
