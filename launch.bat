@echo off
rem Starts sdtrainer (Windows): makes .venv on the first run, installs the CUDA build of torch and the
rem requirements (again only when requirements.txt changes, so a second launch starts at once), then
rem serves the app on http://127.0.0.1:7860 and opens it in the browser.
rem Extra arguments go to webui.py, e.g. launch.bat --lang fr. set TORCH_INDEX=... picks another CUDA build.
setlocal
cd /d "%~dp0"
if not defined TORCH_INDEX set "TORCH_INDEX=https://download.pytorch.org/whl/cu126"

rem 1. a Python that is new enough: the py launcher (python.org installs it), else python on the PATH
set "PY="
py -3 -c "import sys" >nul 2>nul && set "PY=py -3"
if not defined PY python -c "import sys" >nul 2>nul && set "PY=python"
if not defined PY goto :no_python
%PY% -c "import sys; sys.exit(sys.version_info < (3, 10))"
if errorlevel 1 goto :old_python

rem 2. the virtualenv (made again when its Python no longer runs)
if exist .venv\Scripts\python.exe (
  .venv\Scripts\python.exe -c "import sys" >nul 2>nul
  if errorlevel 1 rmdir /s /q .venv
)
if not exist .venv\Scripts\python.exe (
  echo Creating .venv...
  %PY% -m venv .venv
  if errorlevel 1 goto :no_venv
)

rem 3. torch with CUDA, then the requirements, when requirements.txt changed since the last install
fc /b requirements.txt .venv\requirements.installed >nul 2>nul
if errorlevel 1 (
  echo Installing torch with CUDA and the requirements into .venv ^(first run: several minutes^)...
  .venv\Scripts\python.exe -m pip install --disable-pip-version-check torch --index-url %TORCH_INDEX%
  if errorlevel 1 goto :install_failed
  .venv\Scripts\python.exe -m pip install --disable-pip-version-check -r requirements.txt
  if errorlevel 1 goto :install_failed
  copy /y requirements.txt .venv\requirements.installed >nul
)

rem 4. the app, which opens the browser once it is up
.venv\Scripts\python.exe webui.py --open-browser %*
if errorlevel 1 pause
exit /b 0

:no_python
echo sdtrainer needs Python 3.10 or newer, and none was found.
echo Install it from https://www.python.org/downloads/ (tick "Add python.exe to PATH"), then run launch.bat again.
echo (If typing python opens the Microsoft Store, install from python.org instead.)
pause
exit /b 1

:old_python
echo Your Python is too old: sdtrainer needs 3.10 or newer.
%PY% --version
echo Install a newer one from https://www.python.org/downloads/, then run launch.bat again.
pause
exit /b 1

:no_venv
echo Could not create the .venv folder: check that this folder is writable and that Python is complete.
pause
exit /b 1

:install_failed
echo Installing the requirements failed (see the messages above). Check the internet connection and the free
echo disk space, then run launch.bat again.
pause
exit /b 1
