"""The time a run is said to take before it starts."""
from sdtrainer.config import Device, defaults_for, load_config
from sdtrainer.estimate import estimate, minutes

RUN = {"model": "m.safetensors", "images": "photos", "token": "ohwx", "class_word": "person"}


def test_class_images_to_make_and_steps_each_add_their_time():
    cfg = load_config("24gb", values=RUN)
    none, some = estimate(cfg, 0, demo=False), estimate(cfg, 200, demo=False)
    assert none.class_images_s == 0 and some.class_images_s > 0 and some.training_s == none.training_s
    longer = estimate(load_config("24gb", values={**RUN, "steps": 4000}), 200, demo=False)
    assert longer.training_s > some.training_s and longer.class_images_s == some.class_images_s


def test_a_smaller_preset_samples_smaller_batches_and_takes_longer():
    fast, slow = (estimate(load_config(p, values=RUN), 200, demo=False) for p in ("24gb", "8gb"))
    assert slow.class_images_s > fast.class_images_s


def test_no_class_images_are_made_without_prior_preservation():
    cfg = load_config("24gb", values={**RUN, "prior_loss_weight": 0.0})
    assert estimate(cfg, 200, demo=False).class_images_s == 0


def test_the_cpu_demo_run_is_said_to_take_a_few_minutes():
    cfg = load_config("24gb", values=RUN, device_defaults=defaults_for(Device.CPU))
    est = estimate(cfg, cfg.class_images, demo=True)
    assert est.class_images_s + est.training_s < 5 * 60  # the whole run, a few minutes


def test_minutes_read_as_an_estimate():
    assert [minutes(s) for s in (20, 61, 15 * 60 + 20, 2 * 3600 + 5 * 60)] == ["< 1 min", "1 min", "15 min", "2 h 05"]


def test_every_preset_has_its_own_measured_speed():
    """A preset missing from the table would borrow another's speed in silence (12gb once said 4x too long)."""
    from sdtrainer.config import preset_names
    from sdtrainer.estimate import GPU_STEPS_PER_S

    assert set(GPU_STEPS_PER_S) == set(preset_names())
    times = {p: estimate(load_config(p, values={**RUN, "steps": 1000, "preview_every": 0}), 0, demo=False).training_s
             for p in ("24gb", "12gb", "8gb", "lora-8gb")}
    assert times["24gb"] < times["lora-8gb"] < times["12gb"] < times["8gb"], times  # as measured on the H200
