"""webui.py's command line: safe defaults, refusals with a message, and no work at import time."""
import subprocess
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


@pytest.mark.parametrize("value", ["joe", ":secret", "joe:"])
def test_bad_auth_is_refused(value, capsys):
    assert webui.main(["--auth", value]) == 2
    assert "USER:PASSWORD" in capsys.readouterr().err


def test_unknown_language_is_refused():
    with pytest.raises(SystemExit):
        webui.build_parser().parse_args(["--lang", "de"])
