#!/usr/bin/env bash
# Opens VS Code with the Collab Coder extension on the embedded default model
# (SmolLM2-135M-Instruct GGUF, `llamacpp` backend), the server run by the repository's .venv.
#
#   extension/scripts/open-editor.sh [WORKSPACE]      (default: runs/editor-demo)
#
# With `code` on PATH: installs the .vsix into that VS Code and opens the workspace.
# Otherwise (or with COLLAB_USE_CODE_SERVER=1): starts code-server 4.100.3 (installed by
# extension/scripts/install-code-server.sh when missing) with the extension, prints its URL and
# serves until Ctrl+C. COLLAB_EDITOR_HOST / COLLAB_EDITOR_PORT pick the address (127.0.0.1:8080).
set -euo pipefail

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
VSIX="${COLLAB_VSIX:-$REPO/collab-coder.vsix}"
PYTHON="${COLLAB_PYTHON:-$REPO/.venv/bin/python}"
WORKSPACE="$(mkdir -p "${1:-$REPO/runs/editor-demo}" && cd "${1:-$REPO/runs/editor-demo}" && pwd)"
HOST="${COLLAB_EDITOR_HOST:-127.0.0.1}"
PORT="${COLLAB_EDITOR_PORT:-8080}"

[ -f "$VSIX" ] || { echo "open-editor: $VSIX is missing; build it with 'make extension' (npm run package)" >&2; exit 1; }
[ -x "$PYTHON" ] || { echo "open-editor: $PYTHON is missing; run 'make setup' first" >&2; exit 1; }
"$PYTHON" -c "import collabcoder.server" 2>/dev/null \
  || { echo "open-editor: $PYTHON cannot import collabcoder.server; run 'make setup'" >&2; exit 1; }

# A demo workspace (extension/scripts/demo/, the files the e2e test runs on too): demo.py to type
# in, with a function whose doctest examples check each candidate and one that test_demo.py
# tests; the server's interpreter in its settings. Files already there are kept.
for f in demo.py test_demo.py; do
  [ -e "$WORKSPACE/$f" ] || cp "$REPO/extension/scripts/demo/$f" "$WORKSPACE/$f"
done
mkdir -p "$WORKSPACE/.vscode"
if [ ! -e "$WORKSPACE/.vscode/settings.json" ]; then
  cat > "$WORKSPACE/.vscode/settings.json" <<EOF
{
  "collab.server.pythonPath": "$PYTHON",
  "collab.backend": "llamacpp",
  "collab.model": "smollm2-135m-instruct"
}
EOF
fi

if command -v code >/dev/null 2>&1 && [ -z "${COLLAB_USE_CODE_SERVER:-}" ]; then
  code --install-extension "$VSIX" --force
  echo "open-editor: opening $WORKSPACE in VS Code"
  exec code "$WORKSPACE" "$WORKSPACE/demo.py"
fi

# code-server: its own user-data and extensions folders under runs/, workspace trust off.
if command -v code-server >/dev/null 2>&1; then
  CODE_SERVER="$(command -v code-server)"
else
  echo "open-editor: no 'code' on PATH: installing code-server (once, a few minutes)" >&2
  PREFIX="$(bash "$REPO/extension/scripts/install-code-server.sh" | tail -n 1)"
  CODE_SERVER="$PREFIX/node_modules/.bin/code-server"
fi
STATE="$REPO/runs/code-server"
mkdir -p "$STATE/user-data/User" "$STATE/extensions"
if [ ! -e "$STATE/user-data/User/settings.json" ]; then
  cat > "$STATE/user-data/User/settings.json" <<'EOF'
{
  "security.workspace.trust.enabled": false,
  "workbench.startupEditor": "none",
  "telemetry.telemetryLevel": "off",
  "update.mode": "none"
}
EOF
fi
"$CODE_SERVER" --user-data-dir "$STATE/user-data" --extensions-dir "$STATE/extensions" --install-extension "$VSIX" --force
echo "open-editor: VS Code (code-server) with Collab Coder: http://$HOST:$PORT/?folder=$WORKSPACE"
echo "open-editor: Ctrl+C stops it"
exec "$CODE_SERVER" --auth none --bind-addr "$HOST:$PORT" --disable-telemetry --disable-update-check \
  --disable-workspace-trust --user-data-dir "$STATE/user-data" --extensions-dir "$STATE/extensions" "$WORKSPACE"
