"""bench/train.py and bench/default_run.py on the tiny model and the CPU (the code paths the GPU run takes), and the
README table."""
import json
import time

import pytest

from bench import readme_table, train


def test_tiny_bench_writes_the_issue_schema(tmp_path):
    train.main(["--tiny", "--device", "cpu", "--in-process", "--steps", "2", "--images", "1", "--sample-steps", "2",
                "--out", str(tmp_path), "--jobs", "train:24gb", "train:8gb", "train:lora-8gb", "train:fp32",
                "sampling"])
    latest = json.loads((tmp_path / "latest.json").read_text())
    assert set(latest) == {"date", "device", "torch", "train", "fp32", "ceiling", "sampling"}
    assert set(latest["train"]) == {"24gb", "12gb", "8gb", "lora-8gb"}
    for preset in ("24gb", "8gb"):
        row = latest["train"][preset]
        assert set(row) == {"it_per_s", "it_per_s_spread", "processes", "peak_vram_gib", "tflops", "reference",
                            "reference_it_per_s", "speedup_vs_reference", "default_reference_it_per_s",
                            "speedup_vs_default", "learning"}
        assert row["it_per_s"] > 0 and row["processes"] == 1 and row["it_per_s_spread"] == [row["it_per_s"]] * 2
        # 3 steps at lr 1e-6: the bf16 8gb run learns what the fp32 run learns (tests/test_presets.py has the
        # tolerance argument); the 24gb run keeps fp32 weights, so every weight moves
        assert 0.8 < row["learning"]["vs_fp32"] < 1.2, row["learning"]
        assert row["learning"]["share_changed"] > (0.9 if preset == "24gb" else 0.001)
    assert latest["train"]["24gb"]["reference"] == "reference:strong"
    assert latest["train"]["8gb"]["reference"] == "reference:lowmem"
    # method lora trains its factors (fp32), not the UNet: they are what moves, and the subject's error drops
    lora = latest["train"]["lora-8gb"]["learning"]
    assert lora["share_changed"] > 0.4 and lora["error_drop"] > 0, lora
    assert latest["fp32"]["learning"]["vs_fp32"] == 1.0 and latest["fp32"]["learning"]["error_drop"] > 0
    assert latest["sampling"]["seconds_per_image"] > 0
    dated = tmp_path / f"train-{latest['date']}-cpu.json"
    assert json.loads(dated.read_text()) == latest
    details = json.loads((tmp_path / f"train-{latest['date']}-cpu-details.json").read_text())
    assert details["jobs"]["train:24gb"]["losses"] and "error" not in details["jobs"]["train:8gb"]
    assert details["jobs"]["train:fp32"]["precision"] == "32"


def test_tiny_references_run(tmp_path):
    details = train.main(["--tiny", "--device", "cpu", "--in-process", "--steps", "1", "--images", "1",
                          "--sample-steps", "2", "--out", str(tmp_path), "--jobs", "reference:default",
                          "reference:strong", "reference:lowmem", "reference:sampling"])
    for recipe in ("default", "strong", "lowmem"):
        assert details["jobs"][f"reference:{recipe}"]["it_per_s"] > 0, details["jobs"][f"reference:{recipe}"]
    assert details["train"]["24gb"]["reference_it_per_s"] > 0 and details["train"]["8gb"]["speedup_vs_default"] is None
    assert details["sampling"]["reference_it_per_s"] > 0


def row(it_per_s, spread, peak, reference, ref_it_per_s, vs_fp32, changed):
    return {"it_per_s": it_per_s, "it_per_s_spread": spread, "processes": 3, "peak_vram_gib": peak,
            "tflops": it_per_s and round(it_per_s * 4.94, 1), "reference": reference,
            "reference_it_per_s": ref_it_per_s,
            "speedup_vs_reference": it_per_s and round(it_per_s / ref_it_per_s, 2), "default_reference_it_per_s": 5.0,
            "speedup_vs_default": it_per_s and round(it_per_s / 5.0, 2),
            "learning": {"share_changed": changed, "error_drop": 0.001, "vs_fp32": vs_fp32}}


RESULTS = {"date": "2026-11-25", "device": "GPU X", "torch": "2.11",
           "train": {"24gb": row(30.0, [29.5, 30.4], 15.5, "reference:strong", 8.0, 1.0, 1.0),
                     "12gb": row(12.0, [11.0, 12.5], 9.0, "reference:lowmem", 4.0, 0.981, 0.123),
                     "8gb": row(None, [None, None], None, "reference:lowmem", 4.0, None, None)},
           "fp32": {"it_per_s": 6.0, "learning": {"share_changed": 1.0, "error_drop": 0.001, "vs_fp32": 1.0}},
           "ceiling": {"it_per_s": 40.0, "tflops": 197.6},
           "sampling": {"it_per_s": 50.0, "reference_it_per_s": 20.0, "speedup_vs_reference": 2.5,
                        "seconds_per_image": 0.5}}


def test_readme_table_replaces_only_the_marked_blocks():
    readme = ("intro\n<!-- bench:train:en -->\nold\n<!-- /bench -->\nmiddle\n"
              "<!-- bench:train:fr -->\nancien\n<!-- /bench -->\nend\n")
    new = readme_table.update(readme, RESULTS)
    assert new.startswith("intro\n") and "\nmiddle\n" in new and new.endswith("end\n")
    assert "old" not in new and "ancien" not in new
    assert "| 30 (29.5–30.4) | 15.5 GiB | 148.2 |" in new and "3.75×" in new and "| — (—–—) | — |" in new
    assert "| 98.1% [12.3%] |" in new and "| 197.6 |" in new and "median of 3 processes" in new
    assert "Measured on GPU X on 2026-11-25" in new and "Mesuré sur GPU X le 2026-11-25" in new
    assert readme_table.update(new, RESULTS) == new


def test_readme_table_without_markers_says_what_to_add():
    with pytest.raises(ValueError, match="bench:train:en"):
        readme_table.update("no table here", RESULTS)


def test_readme_is_up_to_date_with_latest_json():
    assert readme_table.main(["--check"]) == 0, "run `python bench/readme_table.py`"


@pytest.mark.slow
def test_a_job_on_two_processes_counts_the_images_of_both(tmp_path):
    """What the multi-GPU speed-up will be measured with: the trainer's ddp path, two gloo processes here."""
    details = train.main(["--tiny", "--device", "cpu", "--in-process", "--steps", "2", "--out", str(tmp_path),
                          "--jobs", "train:24gb+devices=2"])
    job = details["jobs"]["train:24gb+devices=2"]
    assert "error" not in job and job["devices"] == 2 and job["it_per_s"] > 0
    assert job["images_per_s"] == pytest.approx(2 * job["it_per_s"])
    assert job["share_changed"] > 0.9 and job["error_drop"] != 0


@pytest.mark.slow
def test_default_run_times_each_phase_of_a_whole_run(tmp_path):
    from bench import default_run

    started = time.perf_counter()
    record = default_run.main(["--tiny", "--device", "cpu", "--no-reference", "--out", str(tmp_path), "--set",
                               "steps=4", "class_images=2", "class_image_steps=2", "save_every=2", "preview_every=2",
                               "preview_steps=2", "precision=32", "cuda_graphs=false"])
    wall = time.perf_counter() - started
    ours = record["ours"]
    parts = ("load_and_checks_s", "class_images_s", "caching_s", "first_step_s", "steps_saves_previews_s")
    assert all(ours[p] > 0 for p in parts), ours  # every phase was seen, in its order
    assert ours["total_s"] < wall  # the run alone, not the writing of its inputs
    assert ours["model_and_state_files"] >= 2 and ours["previews"] >= 2  # steps 2 and 4 (and the final files)
    assert 0 < ours["meter_s"] < ours["total_s"] and ours["meter_share"] == pytest.approx(
        ours["meter_s"] / ours["total_s"])  # the meter's own account: the files and the base's answers (before step 1)
    assert record["settings"]["class_images"] == 2 and (tmp_path / f"default-run-{record['date']}-cpu.json").exists()


def test_a_job_is_its_median_process_and_of_two_the_slower():
    runs = [{"it_per_s": 3.5, "peak_reserved_gib": 4.2, "share_changed": 1.0, "error_drop": 0.1},
            {"it_per_s": 2.7, "peak_reserved_gib": 4.1}]
    two = train.combine(runs)
    assert (two["it_per_s"], two["peak_reserved_gib"], two["it_per_s_runs"]) == (2.7, 4.1, [2.7, 3.5])
    assert two["error_drop"] == 0.1  # learning is the first process's, whichever is kept for speed
    three = train.combine(runs + [{"it_per_s": 3.0, "peak_reserved_gib": 4.0}, {"error": "exit code 1"}])
    assert (three["it_per_s"], three["failed_runs"]) == (3.0, 1)
