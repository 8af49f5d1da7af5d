#!/usr/bin/env bash
# Starts sdtrainer (Linux/macOS): makes .venv on the first run, installs the requirements when they
# change, then serves the app on http://127.0.0.1:7860 and opens it in the browser.
# Extra arguments go to webui.py, e.g. ./launch.sh --lang fr --port 7861
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if ! command -v "$PY" >/dev/null 2>&1; then
  echo "sdtrainer needs Python 3.10 or newer, and '$PY' was not found. Install Python, then run ./launch.sh again."
  exit 1
fi
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "sdtrainer needs Python 3.10 or newer; '$PY' is $("$PY" -V 2>&1). Set PYTHON=python3.11 (or newer) and run again."
  exit 1
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/requirements.sha256
wanted=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "Installing the requirements into .venv (first run: several minutes)..."
  .venv/bin/pip install --disable-pip-version-check -r requirements.txt
  echo "$wanted" >"$stamp"
fi
exec .venv/bin/python webui.py --open-browser "$@"
