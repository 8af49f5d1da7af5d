"""Class images: sampled in batches, resumable, with a progress report from the first call on."""
import pytest

from sdtrainer.class_images import (CPU_CLASS_IMAGE_BATCH, Pace, class_image_batch, class_image_path,
                                    generate_class_images)
from sdtrainer.config import PRESET_VRAM_GIB, preset_names


def count_unet_calls(model) -> list[int]:
    calls = [0]
    model.unet.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_images_are_sampled_in_batches_with_a_report_per_image(tmp_path):
    from ldm.model import TINY, StableDiffusion

    model = StableDiffusion(TINY).eval()
    calls, reports = count_unet_calls(model), []
    paths = generate_class_images(model, "dog", 5, tmp_path, callback=lambda *r: reports.append(r),
                                  resolution=64, steps=2, batch_size=2)
    assert paths == [class_image_path(tmp_path, i) for i in range(5)] and all(p.is_file() for p in paths)
    assert calls[0] == 3 * 2  # batches of 2, 2 and 1, two sampler steps each (cond and uncond in one call)
    assert reports[0] == (0, 5, None)  # before the first batch: the bar shows from the start
    assert [(done, total) for done, total, _ in reports[1:]] == [(i, 5) for i in range(1, 6)]
    assert [p.name for _, _, p in reports[1:]] == [p.name for p in paths]


def test_a_second_call_keeps_the_images_there_and_reports_them_first(tiny_model, tmp_path):
    generate_class_images(tiny_model, "dog", 2, tmp_path, resolution=64, steps=1, batch_size=4)
    first = class_image_path(tmp_path, 0).read_bytes()
    reports = []
    generate_class_images(tiny_model, "dog", 3, tmp_path, callback=lambda *r: reports.append(r), resolution=64,
                          steps=1, batch_size=4)
    assert reports == [(2, 3, None), (3, 3, class_image_path(tmp_path, 2))]
    assert class_image_path(tmp_path, 0).read_bytes() == first


def test_a_stop_before_a_batch_keeps_what_is_done(tiny_model, tmp_path):
    asked = []
    made = generate_class_images(tiny_model, "dog", 6, tmp_path, should_stop=lambda: asked.append(1) or len(asked) > 1,
                                 resolution=64, steps=1, batch_size=2)
    assert [p.name for p in made] == ["class-00000.png", "class-00001.png"]
    assert not list(tmp_path.glob(".*"))  # no half-written file


@pytest.mark.parametrize("preset", preset_names())
def test_every_preset_has_a_batch_and_smaller_cards_get_smaller_ones(preset):
    batch = class_image_batch(preset, "cuda")
    assert batch >= 1
    smaller = [p for p in preset_names() if PRESET_VRAM_GIB[p] < PRESET_VRAM_GIB[preset]]
    assert all(class_image_batch(p, "cuda") <= batch for p in smaller)
    assert class_image_batch(preset, "cpu") == CPU_CLASS_IMAGE_BATCH


def test_an_unknown_preset_samples_one_at_a_time():
    assert class_image_batch("my-own", "cuda") == 1


def test_the_pace_counts_only_the_images_made_now():
    now = [100.0]
    pace = Pace(clock=lambda: now[0])
    assert pace.eta(40, 50) is None  # 40 were already there: no pace yet
    now[0] = 120.0
    assert pace.eta(45, 50) == pytest.approx(20.0)  # 5 new images in 20 s, 5 to go
    now[0] = 130.0
    assert pace.eta(50, 50) == 0
