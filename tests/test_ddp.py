"""Training on several processes (issue 16): Lightning's ddp over gloo, two CPU processes, the tiny model. The run
takes exactly its steps and writes one set of outputs; every process ends with the same weights; two processes of
batch 1 train as one process of batch 2; resume is exact (and says what changes on another number of processes);
pause and stop reach every process; a process that fails ends the run with its error."""
import multiprocessing
import os
import shutil
import time

import pytest
import torch

from sdtrainer.ddp import ProcessFailed, launch
from sdtrainer.trainer import (BatchPlan, EventKind, RunControl, TrainResult, agreed, batch_for, batch_plan,
                               run_training, share, weights_digest)
from test_trainer import Recorder, config, metrics, train, unet_weights

STEPS = 4


def ddp_config(demo_file, photos, reg, **values):
    """Two processes; a model file at step 2 and the end; previews at the start and the end only."""
    settings = {"devices": 2, "steps": STEPS, "grad_accum": 2, "save_every": 2, "preview_every": 0,
                "save_half": False, **values}
    return config(demo_file, photos, reg, **settings)


@pytest.fixture(scope="module")
def two(demo_file, subject_photos, class_photos, tmp_path_factory):
    cfg = ddp_config(demo_file, subject_photos, class_photos)
    run_dir = tmp_path_factory.mktemp("ddp") / "two"
    result, events = train(cfg, run_dir)
    return cfg, run_dir, result, events


def log_text(events: Recorder) -> str:
    return "\n".join(e.data["message"] for e in events.of(EventKind.LOG))


def test_two_processes_train_exactly_the_steps_and_write_one_set_of_outputs(two):
    cfg, run_dir, result, events = two
    assert (result.step, result.stopped, result.model_file) == (STEPS, False, run_dir / "two-final.safetensors")
    assert [int(r["step"]) for r in metrics(run_dir)] == [1, 2, 3, 4]
    assert [e.step for e in events.of(EventKind.PROGRESS)] == [1, 2, 3, 4]
    assert [len(e.data["vram_reserved_by_device"]) for e in events.of(EventKind.PROGRESS)] == [2] * STEPS
    saved = [(e.step, e.data["kind"]) for e in events.of(EventKind.CHECKPOINT)]
    assert saved == [(2, "model"), (2, "state"), (4, "model"), (4, "state")]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["two-step00002.safetensors"]
    assert sorted(p.name for p in (run_dir / "state").iterdir()) == ["last.ckpt"]
    previews = sorted(p.name for p in (run_dir / "samples").iterdir())
    assert previews == sorted(f"step{s:05d}-p{j}-s42.png" for s in (0, 4) for j in range(3))
    assert len(events.of(EventKind.PREVIEW)) == len(previews)
    log = log_text(events)
    assert log.count("Loaded demo.safetensors") == 1 and "All 2 processes ended with the same weights." in log


def test_two_processes_of_batch_1_train_as_one_process_of_batch_2(two, demo_file, subject_photos, class_photos,
                                                                  tmp_path):
    """Each process takes half of the batch that one process of twice the batch size draws, and DDP averages the
    halves' gradients: the same losses and the same weight updates, up to float rounding (which AdamW magnifies
    where a gradient is nearly 0: 0.1% of the update's size here; two processes training on the same half would
    be off by the whole update)."""
    _, run_dir, result, _ = two
    alone, _ = train(ddp_config(demo_file, subject_photos, class_photos, devices=1, batch_size=2), tmp_path / "one")
    base, shared, single = (unet_weights(path) for path in (demo_file, result.model_file, alone.model_file))
    update = lambda weights: torch.cat([(weights[k] - base[k]).flatten() for k in base])  # noqa: E731
    assert (update(shared) - update(single)).norm() < 0.01 * update(single).norm()
    losses = [float(r["loss"]) for r in metrics(run_dir)]
    assert losses == pytest.approx([float(r["loss"]) for r in metrics(tmp_path / "one")], rel=1e-4)
    assert len(set(losses)) == STEPS


@pytest.mark.slow
def test_resume_on_two_processes_is_exact_and_on_one_says_what_changes(two, demo_file, subject_photos,
                                                                       class_photos, tmp_path):
    _, _, whole, _ = two
    first, _ = train(ddp_config(demo_file, subject_photos, class_photos, steps=2), tmp_path / "split")
    assert first.step == 2
    shutil.copytree(tmp_path / "split", tmp_path / "other")
    resumed, events = train(ddp_config(demo_file, subject_photos, class_photos), tmp_path / "split", resume=True)
    assert (resumed.step, resumed.stopped) == (STEPS, False)
    a, b = unet_weights(whole.model_file), unet_weights(resumed.model_file)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6, msg=key)
    assert [int(r["step"]) for r in metrics(tmp_path / "split")] == [1, 2, 3, 4]
    assert "saved on" not in log_text(events)

    on_one, events = train(ddp_config(demo_file, subject_photos, class_photos, devices=1), tmp_path / "other",
                           resume=True)
    assert on_one.step == STEPS
    assert ("This run's state was saved on 2 process(es), and it continues on 1: from step 2 on, each step averages "
            "2 instance images (before: 4)") in log_text(events)
    assert [int(r["step"]) for r in metrics(tmp_path / "other")] == [1, 2, 3, 4]


class PauseThenStop(Recorder):
    """Pauses after the first step; once the run says it paused, asks it to stop (as a user would)."""

    def __call__(self, event) -> None:
        super().__call__(event)
        if event.kind is EventKind.PROGRESS and event.step == 1:
            self.control.pause()
        if event.kind is EventKind.LOG and event.data["message"].startswith("Paused after step"):
            self.paused_at = event.step
            self.control.stop()


@pytest.mark.slow
def test_pause_and_stop_reach_every_process(demo_file, subject_photos, class_photos, tmp_path):
    cfg = ddp_config(demo_file, subject_photos, class_photos, steps=200, save_every=0, grad_accum=1)
    control = RunControl()
    events = PauseThenStop(control)
    result = run_training(cfg, tmp_path / "run", events, control)
    step = events.paused_at
    assert 1 <= step < 200 and (result.step, result.stopped) == (step, True)
    assert result.model_file == tmp_path / "run" / "checkpoints" / f"run-step{step:05d}.safetensors"
    assert [int(r["step"]) for r in metrics(tmp_path / "run")] == list(range(1, step + 1))
    log = log_text(events)
    assert f"Stopping after step {step}" in log and "All 2 processes ended with the same weights." in log


def fail_in_process_1(channel):
    """Process 1 runs out of memory; process 0 waits for it, as it would in its next collective."""
    if channel.rank == 1:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (in a test)")
    time.sleep(600)


def test_a_failed_process_ends_the_others_and_its_error_reaches_the_caller():
    started = time.perf_counter()
    with pytest.raises(torch.cuda.OutOfMemoryError, match="in a test") as failure:
        launch(2, fail_in_process_1, (), lambda event: None, RunControl())
    assert time.perf_counter() - started < 60
    assert isinstance(failure.value.__cause__, ProcessFailed)
    assert "in training process 1" in str(failure.value.__cause__) and "fail_in_process_1" in str(
        failure.value.__cause__)
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize("classes", [(6, 3), (0, 0)])
def test_the_shares_of_the_processes_are_the_batch_one_process_draws(classes):
    """Two subjects, with and without class images: process r's share is its slice of every row of the batch
    drawn for all, instance rows and the class rows paired with them alike."""
    plan = BatchPlan(instance_counts=(5, 3), class_counts=classes, repeats=(1, 2), batch_size=4, flip_p=0.5,
                     latent_shape=(4, 8, 8), noise_offset=0.1, seed=3)
    rows = 2 if classes[0] else 1  # instance rows, then as many class rows
    for k in range(3):
        batch, shares = batch_for(plan, k), [share(batch_for(plan, k), r, 2) for r in range(2)]
        for key in ("instance", "class"):
            assert torch.equal(torch.cat([s[key] for s in shares]), batch[key])
        for key in ("flip", "timesteps", "noise"):
            parts = [s[key].chunk(rows) for s in shares]
            assert torch.equal(torch.cat([part[i] for i in range(rows) for part in parts]), batch[key])
        assert len(shares[0]["instance"]) == 2 and len(shares[0]["noise"]) == 2 * rows


def test_the_plan_of_n_processes_draws_n_times_the_batch(demo_file):
    from sdtrainer.trainer import CachedData

    data = CachedData(torch.zeros(5, 2, 4, 8, 8), torch.zeros(0, 2, 4, 8, 8), torch.zeros(5, dtype=torch.long),
                      torch.zeros(0, dtype=torch.long), torch.zeros(1, 77, 8))
    cfg = config(demo_file, "photos", batch_size=3)
    assert batch_plan(cfg, data, 2).batch_size == 6 and batch_plan(cfg, data).batch_size == 3


def test_processes_that_end_with_different_weights_fail_the_run():
    """The check behind "same weights": one weight one float step apart changes the digest, and the run fails."""
    layer = torch.nn.Linear(3, 2)
    before = weights_digest(layer)
    with torch.no_grad():
        layer.bias[1] = torch.nextafter(layer.bias[1], torch.tensor(1.0))
    assert weights_digest(layer) != before
    result = TrainResult(4, 4, None, stopped=False)
    assert agreed([(result, before), (result, before)], lambda event: None) is result
    with pytest.raises(RuntimeError, match="ended with different weights"):
        agreed([(result, before), (result, weights_digest(layer))], lambda event: None)


def die_in_process_1(channel):
    """Process 1 vanishes without a word, as under the kernel's out-of-memory killer; process 0 waits for it."""
    if channel.rank == 1:
        os._exit(9)
    time.sleep(600)


@pytest.mark.slow
def test_a_process_that_dies_without_a_word_ends_the_run():
    with pytest.raises(RuntimeError, match="Training process 1 ended with exit code 9 before the run did"):
        launch(2, die_in_process_1, (), lambda event: None, RunControl())
    assert multiprocessing.active_children() == []
