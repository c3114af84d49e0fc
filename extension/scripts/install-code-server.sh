#!/usr/bin/env bash
# Installs a real VS Code for `make run` and the end-to-end tests: code-server 4.100.3 (VS Code
# 1.100.3) and playwright-core, from the npm registry, plus Debian's Chromium and the headers
# code-server's native modules build against. Nothing is downloaded from release pages: npm's
# install scripts (which would fetch prebuilt binaries) are skipped and the native modules are
# built here with node-gyp against the system Node 20.
#
#   extension/scripts/install-code-server.sh [PREFIX]   (default: $VSCODE_E2E_PREFIX or ~/.cache/vscode-e2e)
#
# Needs root (or sudo) only when Debian packages are missing. Takes about 3-6 minutes once;
# later calls find PREFIX/.installed-4.100.3 and return at once. The last line printed is PREFIX;
# the server is PREFIX/node_modules/.bin/code-server.
set -euo pipefail

VERSION=4.100.3
PLAYWRIGHT=1.65.1
PREFIX="${1:-${VSCODE_E2E_PREFIX:-$HOME/.cache/vscode-e2e}}"
DONE="$PREFIX/.installed-$VERSION"
say() { echo "[install-code-server] $*" >&2; }

if [ -f "$DONE" ]; then echo "$PREFIX"; exit 0; fi

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v rg >/dev/null || missing+=(ripgrep)
for pkg in build-essential pkg-config libkrb5-dev libsecret-1-dev libx11-dev libxkbfile-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { say "needs root to apt-get install: ${missing[*]}"; exit 1; }
    SUDO=sudo
  fi
  say "apt-get install ${missing[*]}"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2
fi

major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" = 20 ] || { say "code-server $VERSION needs Node 20; this node is $(node --version)"; exit 1; }

mkdir -p "$PREFIX"
cd "$PREFIX"
[ -f package.json ] || echo '{"private": true}' >package.json
say "npm install code-server@$VERSION playwright-core@$PLAYWRIGHT"
npm install --no-audit --no-fund --ignore-scripts "code-server@$VERSION" "playwright-core@$PLAYWRIGHT" >&2

# node-gyp as bundled with npm, building against the system Node's headers.
npm_root="$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")"
NODE_GYP="$npm_root/node_modules/node-gyp/bin/node-gyp.js"
[ -f "$NODE_GYP" ] || NODE_GYP=/usr/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js
build_native() { node "$NODE_GYP" rebuild --nodedir=/usr "$@" >&2; }

vscode="$PREFIX/node_modules/code-server/lib/vscode"
cd "$vscode"
say "VS Code's runtime modules"
npm install --omit=dev --ignore-scripts --no-audit --no-fund >&2
# VS Code's ripgrep package would fetch a release binary: Debian's rg stands in.
mkdir -p node_modules/@vscode/ripgrep/bin
cp "$(command -v rg)" node_modules/@vscode/ripgrep/bin/rg
for mod in kerberos node-pty @parcel/watcher native-watchdog @vscode/spdlog @vscode/deviceid; do
  if [ -d "node_modules/$mod" ]; then
    say "building $mod"
    (cd "node_modules/$mod" && build_native)
  fi
done
# The rest of code-server's own postinstall step.
rm -rf node_modules.asar && ln -s node_modules node_modules.asar
(cd bin/remote-cli && ln -sf code-linux.sh code-server)
(cd bin/helpers && ln -sf browser-linux.sh browser.sh)
(cd extensions && npm install --omit=dev --ignore-scripts --no-audit --no-fund >&2)

# argon2 (code-server's password hashing) would also fetch a prebuilt binary.
argon="$PREFIX/node_modules/argon2"
if [ -d "$argon" ]; then
  say "building argon2"
  (cd "$argon" && build_native --module_name=argon2 --module_path=lib/binding/napi-v3 --napi_build_version=3 \
    && mkdir -p lib/binding/napi-v3 && cp build/Release/argon2.node lib/binding/napi-v3/)
fi

"$PREFIX/node_modules/.bin/code-server" --version >&2
touch "$DONE"
echo "$PREFIX"
