#!/usr/bin/env bash
# Starts sdtrainer (Linux/macOS): makes .venv on the first run, installs the requirements when they
# change, then serves the app on http://127.0.0.1:7860 and opens it in the browser.
# Extra arguments go to webui.py, e.g. ./launch.sh --lang fr --port 7861
# PYTHON=python3.12 ./launch.sh picks the Python that makes .venv.
set -euo pipefail
cd "$(dirname "$0")"

say() { printf '%s\n' "$@" >&2; }

# 1. a Python that is new enough
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for candidate in python3 python; do
    if command -v "$candidate" >/dev/null 2>&1; then PY=$candidate; break; fi
  done
fi
if [ -z "$PY" ] || ! command -v "$PY" >/dev/null 2>&1; then
  say "sdtrainer needs Python 3.10 or newer, and ${PY:-no python3} was not found." \
      "Install it (Debian/Ubuntu: sudo apt install python3 python3-venv; macOS: https://www.python.org/downloads/)," \
      "then run ./launch.sh again."
  exit 1
fi
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1; then
  say "sdtrainer needs Python 3.10 or newer; $PY is $("$PY" -V 2>&1)." \
      "Install a newer Python, then run again with it, e.g. PYTHON=python3.11 ./launch.sh"
  exit 1
fi

# 2. the virtualenv (made again when its Python no longer runs, e.g. after a system upgrade)
if [ -e .venv/bin/python ] && ! .venv/bin/python -c '' >/dev/null 2>&1; then
  say "The .venv folder is broken (its Python does not run); making it again."
  rm -rf .venv
fi
if [ ! -e .venv/bin/python ]; then
  say "Creating .venv with $("$PY" -V 2>&1)..."
  if ! "$PY" -m venv .venv; then
    rm -rf .venv
    say "Could not create the virtualenv. On Debian/Ubuntu install the venv module (sudo apt install python3-venv)," \
        "then run ./launch.sh again."
    exit 1
  fi
fi

# 3. the requirements, installed again only when requirements.txt changed (a second launch starts at once)
if ! cmp -s requirements.txt .venv/requirements.installed; then
  say "Installing the requirements into .venv (first run: several minutes)..."
  if ! .venv/bin/python -m pip install --disable-pip-version-check -r requirements.txt; then
    say "Installing the requirements failed (see the messages above). Check the internet connection and the free" \
        "disk space, then run ./launch.sh again."
    exit 1
  fi
  cp requirements.txt .venv/requirements.installed
fi

# 4. the app, which opens the browser once it is up
exec .venv/bin/python webui.py --open-browser "$@"
