@echo off
rem Starts sdtrainer (Windows): makes .venv on the first run, installs the CUDA build of torch and the
rem requirements, then serves the app on http://127.0.0.1:7860 and opens it in the browser.
setlocal
cd /d "%~dp0"
where python >nul 2>nul || (echo sdtrainer needs Python 3.10 or newer: install it from python.org, tick "Add python.exe to PATH", then run launch.bat again. & pause & exit /b 1)
python -c "import sys; sys.exit(sys.version_info < (3, 10))" || (echo Your Python is too old: sdtrainer needs 3.10 or newer. & python --version & pause & exit /b 1)
if not exist .venv\Scripts\python.exe python -m venv .venv || (echo Could not create .venv & pause & exit /b 1)
if not exist .venv\requirements.done (
  echo Installing torch with CUDA and the requirements into .venv ^(first run: several minutes^)...
  .venv\Scripts\python -m pip install --disable-pip-version-check torch --index-url https://download.pytorch.org/whl/cu126 || (pause & exit /b 1)
  .venv\Scripts\python -m pip install --disable-pip-version-check -r requirements.txt || (pause & exit /b 1)
  echo done> .venv\requirements.done
)
.venv\Scripts\python webui.py --open-browser %*
if errorlevel 1 pause
