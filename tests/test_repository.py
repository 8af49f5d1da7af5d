"""The project stands alone: its test suite runs from a copy of the repository with no sibling folder
(a contributor's fresh clone), reading nothing outside it."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What a fresh clone does not have: the virtualenv, caches, and what the app and the tests write.
NOT_IN_A_CLONE = shutil.ignore_patterns(".git", ".venv", "__pycache__", ".pytest_cache", "artifacts", "outputs",
                                        "*.safetensors", "*.ckpt")


def copy_alone(tmp_path: Path) -> Path:
    """The repository copied into a folder of its own: `../shared` and every other sibling are absent."""
    copy = tmp_path / "alone" / "sdtrainer"
    shutil.copytree(ROOT, copy, ignore=NOT_IN_A_CLONE)
    assert sorted(p.name for p in copy.parent.iterdir()) == ["sdtrainer"]
    return copy


def run_in(copy: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, *args], cwd=copy, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_suite_runs_from_a_copy_of_the_repository_alone(tmp_path):
    copy = copy_alone(tmp_path)
    imported = run_in(copy, "-c", "import ldm, sdtrainer; print(ldm.__file__, sdtrainer.__file__)")
    assert imported.returncode == 0, imported.stderr
    assert all(Path(p).is_relative_to(copy) for p in imported.stdout.split()), imported.stdout
    # every test module imports from the copy, and the one test that reads reference data passes there
    collected = run_in(copy, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only")
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    model = run_in(copy, "-m", "pytest", "-o", "addopts=", "-q", "-p", "no:cacheprovider", "tests/test_model.py")
    assert model.returncode == 0, model.stdout[-3000:] + model.stderr[-3000:]
    assert re.search(r"\b\d+ passed", model.stdout) and "skipped" not in model.stdout, model.stdout
