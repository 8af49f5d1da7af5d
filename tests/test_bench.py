"""bench/train.py on the tiny model and the CPU (the code path the GPU run takes), and the README table."""
import json

import pytest

from bench import readme_table, train


def test_tiny_bench_writes_the_issue_schema(tmp_path):
    train.main(["--tiny", "--device", "cpu", "--in-process", "--steps", "1", "--images", "1", "--sample-steps", "2",
                "--out", str(tmp_path), "--jobs", "train:24gb", "train:8gb", "sampling"])
    latest = json.loads((tmp_path / "latest.json").read_text())
    assert set(latest) == {"date", "device", "torch", "train", "sampling"}
    assert set(latest["train"]) == {"24gb", "12gb", "8gb"}
    for preset in ("24gb", "8gb"):
        assert set(latest["train"][preset]) == {"it_per_s", "peak_vram_gib", "reference_it_per_s",
                                                "speedup_vs_reference"}
        assert latest["train"][preset]["it_per_s"] > 0
    assert set(latest["sampling"]) == {"it_per_s", "reference_it_per_s", "speedup_vs_reference", "seconds_per_image"}
    assert latest["sampling"]["seconds_per_image"] > 0
    dated = tmp_path / f"train-{latest['date']}-cpu.json"
    assert json.loads(dated.read_text()) == latest
    details = json.loads((tmp_path / f"train-{latest['date']}-cpu-details.json").read_text())
    assert details["jobs"]["train:24gb"]["losses"] and "error" not in details["jobs"]["train:8gb"]


def test_tiny_reference_runs_when_diffusers_is_there(tmp_path):
    pytest.importorskip("diffusers")
    details = train.main(["--tiny", "--device", "cpu", "--in-process", "--steps", "1", "--images", "1",
                          "--sample-steps", "2", "--out", str(tmp_path), "--jobs", "reference:train",
                          "reference:sampling"])
    assert details["jobs"]["reference:train"]["it_per_s"] > 0
    assert details["sampling"]["reference_it_per_s"] > 0


RESULTS = {"date": "2026-11-25", "device": "GPU X", "torch": "2.11",
           "train": {"24gb": {"it_per_s": 30.0, "peak_vram_gib": 15.5, "reference_it_per_s": 8.0,
                              "speedup_vs_reference": 3.75},
                     "12gb": {"it_per_s": 12.0, "peak_vram_gib": 9.0, "reference_it_per_s": 8.0,
                              "speedup_vs_reference": 1.5},
                     "8gb": {"it_per_s": None, "peak_vram_gib": None, "reference_it_per_s": 4.0,
                             "speedup_vs_reference": None}},
           "sampling": {"it_per_s": 50.0, "reference_it_per_s": 20.0, "speedup_vs_reference": 2.5,
                        "seconds_per_image": 0.5}}


def test_readme_table_replaces_only_the_marked_blocks():
    readme = ("intro\n<!-- bench:train:en -->\nold\n<!-- /bench -->\nmiddle\n"
              "<!-- bench:train:fr -->\nancien\n<!-- /bench -->\nend\n")
    new = readme_table.update(readme, RESULTS)
    assert new.startswith("intro\n") and "\nmiddle\n" in new and new.endswith("end\n")
    assert "old" not in new and "ancien" not in new
    assert "| 30 | 15.5 GiB |" in new and "3.75×" in new and "| — | — |" in new
    assert "Measured on GPU X on 2026-11-25" in new and "Mesuré sur GPU X le 2026-11-25" in new
    assert readme_table.update(new, RESULTS) == new


def test_readme_table_without_markers_says_what_to_add():
    with pytest.raises(ValueError, match="bench:train:en"):
        readme_table.update("no table here", RESULTS)


def test_readme_is_up_to_date_with_latest_json():
    assert readme_table.main(["--check"]) == 0, "run `python bench/readme_table.py`"
