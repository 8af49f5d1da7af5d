"""webui.py's command line: safe defaults, refusals with a message, and no work at import time."""
import socket
import re
import subprocess
import threading
import sys
from pathlib import Path

import pytest

import webui

ROOT = Path(__file__).resolve().parent.parent


def test_import_builds_nothing():
    code = "import sys, webui; print('gradio' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_defaults_serve_this_computer_only():
    host, auth = webui.check_args(webui.build_parser().parse_args([]))
    assert (host, auth) == ("127.0.0.1", None)


def test_listen_needs_a_login(capsys):
    assert webui.main(["--listen"]) == 2
    assert "--auth USER:PASSWORD" in capsys.readouterr().err
    host, auth = webui.check_args(webui.build_parser().parse_args(["--listen", "--auth", "joe:pa:ss"]))
    assert (host, auth) == ("0.0.0.0", ("joe", "pa:ss"))


@pytest.mark.parametrize("value", ["joe", ":secret", "joe:", " : ", "  :secret", "joe:   "])
def test_bad_auth_is_refused(value, capsys):
    assert webui.main(["--auth", value]) == 2
    assert "USER:PASSWORD" in capsys.readouterr().err


def test_unknown_language_is_refused():
    with pytest.raises(SystemExit):
        webui.build_parser().parse_args(["--lang", "de"])


# ---------------------------------------------------------------- launchers

FAKE_PYTHON = """#!/usr/bin/env bash
# A stand-in for python3 (version from FAKE_VERSION) that logs what it is asked to do.
echo "system $*" >> "$LAUNCH_LOG"
case "$*" in
  -V) echo "Python $FAKE_VERSION" ;;
  "-c import sys; sys.exit(sys.version_info < (3, 10))") [ "$FAKE_VERSION" != 3.8.10 ] ;;
  "-m venv .venv") mkdir -p .venv/bin && cp "$0" .venv/bin/python.real &&
    printf '#!/usr/bin/env bash\\necho "venv $*" >> "$LAUNCH_LOG"\\n' > .venv/bin/python && chmod +x .venv/bin/python ;;
esac
"""


def launch(folder: Path, *args: str, version: str = "3.11.4", python: str | None = None):
    """Run launch.sh from a copy of the repository's launcher in `folder`; returns (exit code, stderr, log lines)."""
    log = folder / "launch.log"
    log.write_text("")
    fake = folder / "fake-python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "LAUNCH_LOG": str(log), "FAKE_VERSION": version, "PYTHON": python or str(fake)}
    out = subprocess.run(["bash", str(folder / "launch.sh"), *args], cwd=folder, env=env, capture_output=True,
                         text=True, timeout=30)
    return out.returncode, out.stderr, log.read_text().splitlines()


@pytest.fixture
def launcher_copy(tmp_path) -> Path:
    for name in ("launch.sh", "requirements.txt"):
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    return tmp_path


def test_launch_sh_first_run_installs_and_second_run_starts_at_once(launcher_copy):
    code, err, log = launch(launcher_copy, "--lang", "fr")
    assert code == 0, err
    assert "system -m venv .venv" in log
    assert "venv -m pip install --disable-pip-version-check -r requirements.txt" in log
    assert log[-1] == "venv webui.py --open-browser --lang fr"
    code, err, log = launch(launcher_copy)
    assert code == 0 and not any("venv" in line and "pip" in line for line in log) and "Installing" not in err
    assert "system -m venv .venv" not in log and log[-1] == "venv webui.py --open-browser"
    with open(launcher_copy / "requirements.txt", "a") as f:
        f.write("tqdm\n")
    _, _, log = launch(launcher_copy)
    assert any("pip install" in line for line in log)  # changed requirements are installed again


def test_launch_sh_explains_a_missing_or_old_python(launcher_copy):
    code, err, _ = launch(launcher_copy, python="python2.4-nowhere")
    assert code == 1 and "needs Python 3.10 or newer" in err and "not found" in err
    code, err, log = launch(launcher_copy, version="3.8.10")
    assert code == 1 and "Python 3.8.10" in err and "PYTHON=python3.11" in err
    assert not (launcher_copy / ".venv").exists() and not any("webui.py" in line for line in log)


def test_launch_bat_does_the_same_on_windows():
    """launch.bat cannot run here; check that it keeps its promises (and its CRLF line ends, which cmd needs)."""
    text = (ROOT / "launch.bat").read_bytes().decode()
    assert "\r\n" in text and "\n" not in text.replace("\r\n", "")
    for needed in ("sys.version_info < (3, 10)", "python.org", "-m venv .venv", "download.pytorch.org/whl/cu",
                   "-r requirements.txt", "fc /b requirements.txt .venv\\requirements.installed",
                   "webui.py --open-browser %*"):
        assert needed in text, needed
    assert text.index("--index-url") < text.index("-r requirements.txt")  # CUDA torch first, then the rest


def test_the_console_says_where_the_app_runs_and_nothing_about_share_links(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "webui.py", "--port", str(port), "--models-dir", str(tmp_path / "m"),
                             "--outputs-dir", str(tmp_path / "o")], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = threading.Timer(120, proc.kill)  # a server that never says where it runs fails, not hangs
    deadline.start()
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "is running on" in line:
                break
        assert f"sdtrainer is running on http://127.0.0.1:{port}" in lines[-1], "".join(lines)
    finally:
        proc.terminate()
        rest, _ = proc.communicate(timeout=30)
        deadline.cancel()
    assert "share=True" not in "".join(lines) + rest
def test_ci_builds_its_own_virtualenv_not_the_apps():
    """.ci/run installs the CPU build of torch: in launch.sh's .venv it would replace the app's CUDA torch."""
    def venv_of(script: str) -> str:
        return re.search(r"-m venv (\S+)", (ROOT / script).read_text()).group(1)

    ci = venv_of(".ci/run")
    assert ci != venv_of("launch.sh")
    used = re.findall(r"(?:^|\s)(\.[\w-]+)/bin/", (ROOT / ".ci/run").read_text(), re.M)
    assert len(used) == 3 and set(used) == {ci}  # two installs and the test run: all in CI's own venv


def test_start_removes_what_interrupted_saves_left(tmp_path, capsys):
    models, outputs = tmp_path / "models", tmp_path / "outputs" / "runs" / "joe" / "state"
    outputs.mkdir(parents=True)
    models.mkdir()
    leftover = outputs / ".last.ckpt.999999999-0123abcd.tmp.ckpt"  # no process has that id
    leftover.write_bytes(b"half a state")
    (models / "v1-5.safetensors").write_bytes(b"a model")
    webui.remove_leftovers(models, tmp_path / "outputs")
    assert not leftover.exists() and (models / "v1-5.safetensors").exists()
    assert str(leftover) in capsys.readouterr().out


@pytest.fixture
def taken_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_a_port_in_use_is_one_line_naming_port(taken_port, capsys):
    assert webui.main(["--port", str(taken_port)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"Port {taken_port} is already in use" in err and "--port" in err and len(err.splitlines()) == 1


def test_without_port_the_next_free_one_is_taken_and_said(taken_port, monkeypatch, capsys):
    monkeypatch.setattr(webui, "DEFAULT_PORT", taken_port)
    port = webui.pick_port("127.0.0.1", None)
    assert port > taken_port and webui.is_free("127.0.0.1", port)
    assert f"serving on port {port} instead" in capsys.readouterr().out
