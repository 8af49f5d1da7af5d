"""Tests for sdtrainer.preflight: the GPU gate, driven by fake probes (plus the real probe on a GPU-less machine)."""
import os
import sys
from dataclasses import dataclass, field

import pytest
import torch

from sdtrainer.messages import say_in
from sdtrainer.preflight import (
    GIB,
    GpuInfo,
    GpuProcess,
    GpuQueryError,
    NvmlProbe,
    check_gpu,
    check_gpus,
    cpu_warning,
    merge_processes,
    process_name,
)

SMALLER = {"12gb": 11.0, "8gb": 7.5}


@dataclass
class FakeProbe:
    """A GPU that exists only in the test: an RTX 3090 with 23 GiB free by default."""

    name: str = "NVIDIA GeForce RTX 3090"
    total_gib: float = 24.0
    free_gib: float = 23.0
    driver: str = "550.54.14"
    procs: list[GpuProcess] = field(default_factory=list)
    cuda: bool = True
    build: str | None = "12.4"
    count: int = 1
    error: str | None = None  # raise GpuQueryError with this text from every NVML query

    def cuda_available(self) -> bool:
        return self.cuda

    def cuda_build(self) -> str | None:
        return self.build

    def device_count(self) -> int:
        self._fail()
        return self.count

    def info(self, index: int) -> GpuInfo:
        self._fail()
        return GpuInfo(self.name, int(self.total_gib * GIB), int(self.free_gib * GIB), self.driver)

    def processes(self, index: int) -> list[GpuProcess]:
        self._fail()
        return list(self.procs)

    def _fail(self) -> None:
        if self.error:
            raise GpuQueryError(self.error)


XORG = GpuProcess(1201, "Xorg", 310, "graphics")
GNOME = GpuProcess(1502, "gnome-shell", 95, "graphics")
OTHER_TRAINER = GpuProcess(4242, "python", 8120, "compute")


def test_enough_free_goes():
    report = check_gpu(20, "24gb", SMALLER, probe=FakeProbe(free_gib=23.0))
    assert report.ok and report.reasons == []
    assert "OK: training can start." in report.format()


def test_exactly_the_required_free_goes():
    assert check_gpu(20, "24gb", probe=FakeProbe(free_gib=20.0)).ok


@pytest.mark.parametrize("free, suggested", [(9.1, "8gb"), (11.5, "12gb"), (11.0, "12gb"), (8.0, "8gb")])
def test_too_little_free_refuses_and_suggests_largest_preset_that_fits(free, suggested):
    report = check_gpu(20, "24gb", SMALLER, probe=FakeProbe(free_gib=free, procs=[XORG]))
    assert not report.ok
    [reason] = report.reasons
    assert f"Only {free:.1f} GiB free of 24.0 GiB; the 24gb preset needs 20 GiB." in reason
    assert f"choose the {suggested} preset (needs {SMALLER[suggested]:g} GiB)" in reason
    assert "Close the programs listed above" in reason


def test_too_little_free_for_every_preset_says_how_much_to_free():
    [reason] = check_gpu(20, "24gb", SMALLER, probe=FakeProbe(free_gib=5.0, procs=[XORG])).reasons
    assert "to free at least 15.0 GiB more" in reason
    assert "choose" not in reason


def test_too_little_free_with_nothing_listed_names_likely_programs():
    [reason] = check_gpu(20, "24gb", probe=FakeProbe(free_gib=9.0)).reasons
    assert "Close programs that use the GPU" in reason


def test_other_compute_process_refuses_naming_it():
    report = check_gpu(20, "24gb", SMALLER, probe=FakeProbe(procs=[XORG, OTHER_TRAINER]))
    assert not report.ok
    [reason] = report.reasons
    assert "pid 4242" in reason and "python" in reason and "8120 MiB" in reason
    assert "Close it" in reason


def test_compute_process_with_unknown_memory_still_refuses():
    unknown = GpuProcess(77, "python.exe", None, "compute")
    [reason] = check_gpu(20, "24gb", probe=FakeProbe(procs=[unknown])).reasons
    assert "pid 77 python.exe (memory use unknown)" in reason


def test_low_free_and_compute_process_give_two_reasons():
    report = check_gpu(20, "24gb", SMALLER, probe=FakeProbe(free_gib=14.0, procs=[OTHER_TRAINER]))
    assert len(report.reasons) == 2
    assert report.reasons[0].startswith("Only 14.0 GiB free")
    assert "pid 4242" in report.reasons[1]


def test_small_graphics_processes_go_and_are_listed():
    report = check_gpu(20, "24gb", probe=FakeProbe(free_gib=23.5, procs=[XORG, GNOME]))
    assert report.ok
    text = report.format()
    assert "pid 1201 Xorg (graphics, 310 MiB)" in text
    assert "pid 1502 gnome-shell (graphics, 95 MiB)" in text


def test_windows_desktop_compute_plus_graphics_does_not_block():
    explorer = GpuProcess(5120, "explorer.exe", None, "compute+graphics")
    report = check_gpu(20, "24gb", probe=FakeProbe(procs=[explorer]))
    assert report.ok
    assert "explorer.exe (compute+graphics, memory use unknown)" in report.format()


def test_12gb_card_refuses_24gb_preset_as_too_small_and_suggests_12gb():
    card = FakeProbe(name="NVIDIA GeForce RTX 3060", total_gib=12.0, free_gib=11.4)
    report = check_gpu(20, "24gb", SMALLER, probe=card)
    assert not report.ok
    [reason] = report.reasons  # no extra "close programs" reason: that cannot help
    assert "RTX 3060" in reason and "12.0 GiB in total" in reason and "at least 23 GiB" in reason
    assert "Choose the 12gb preset (needs 11 GiB free)." in reason


def test_12gb_card_goes_for_12gb_preset():
    card = FakeProbe(total_gib=12.0, free_gib=11.4)
    assert check_gpu(11, "12gb", {"8gb": 7.5}, min_total_gib=11.5, probe=card).ok


def test_no_cuda_refuses_with_text():
    report = check_gpu(20, "24gb", probe=FakeProbe(cuda=False))
    assert not report.ok
    [reason] = report.reasons
    assert reason.startswith("No CUDA GPU was found")
    assert "needs an NVIDIA GPU" in reason and "--device cpu" in reason
    assert "GPU 0: not available" in report.format()


def test_no_cuda_with_cpu_only_torch_says_so():
    [reason] = check_gpu(20, "24gb", probe=FakeProbe(cuda=False, build=None)).reasons
    assert "CPU-only build" in reason and "--device cpu" in reason


def test_nvml_error_refuses_with_driver_text():
    report = check_gpu(20, "24gb", probe=FakeProbe(error="NVML: Driver Not Loaded"))
    assert not report.ok
    [reason] = report.reasons
    assert "NVIDIA driver was not found or could not be queried" in reason
    assert "Driver Not Loaded" in reason and "nvidia-smi" in reason


def test_missing_device_index_refuses():
    [reason] = check_gpu(20, "24gb", device_index=1, probe=FakeProbe(count=1)).reasons
    assert "no GPU with index 1" in reason and "sees 1 GPU(s)" in reason


def test_own_pid_in_compute_list_is_ignored_but_listed():
    me = GpuProcess(os.getpid(), "python", 400, "compute")
    report = check_gpu(20, "24gb", probe=FakeProbe(procs=[me]))
    assert report.ok
    assert f"pid {os.getpid()} python (this program) (compute, 400 MiB)" in report.format()


def test_report_format_contains_gpu_memory_and_driver():
    text = check_gpu(20, "24gb", probe=FakeProbe(free_gib=21.25, procs=[XORG])).format()
    assert "GPU 0: NVIDIA GeForce RTX 3090" in text
    assert "21.2 GiB free of 24.0 GiB" in text
    assert "driver: 550.54.14" in text
    assert "Preset 24gb needs 20 GiB free." in text


def test_cpu_warning_only_for_real_models():
    assert cpu_warning(model_is_tiny=True) is None
    text = cpu_warning(model_is_tiny=False)
    assert "days" in text and "--device cpu" in text


def test_merge_processes_joins_lists_and_names():
    compute = [(10, 500 * 2**20), (11, None)]
    graphics = [(10, 20 * 2**20), (12, 64 * 2**20)]
    merged = merge_processes(compute, graphics, name_of=lambda pid: f"p{pid}")
    assert merged == [
        GpuProcess(10, "p10", 500, "compute+graphics"),
        GpuProcess(11, "p11", None, "compute"),
        GpuProcess(12, "p12", 64, "graphics"),
    ]


def test_process_name_falls_back_to_pid():
    assert process_name(os.getpid()) != f"pid {os.getpid()}"
    assert process_name(2**22 + 12345) == f"pid {2**22 + 12345}"  # above Linux's pid_max


class _CudaSaysYes(NvmlProbe):
    def cuda_available(self) -> bool:
        return True


def test_nvml_errors_become_gpu_query_error(monkeypatch):
    pynvml = pytest.importorskip("pynvml")

    def not_loaded():
        raise pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

    monkeypatch.setattr(pynvml, "nvmlInit", not_loaded)
    with pytest.raises(GpuQueryError, match="Driver Not Loaded"):
        NvmlProbe().device_count()
    [reason] = check_gpu(20, "24gb", probe=_CudaSaysYes()).reasons
    assert "NVIDIA driver was not found" in reason and "Driver Not Loaded" in reason


def test_missing_pynvml_becomes_driver_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    [reason] = check_gpu(20, "24gb", probe=_CudaSaysYes()).reasons
    assert "nvidia-ml-py package is not installed" in reason


def _nvml_works() -> bool:
    try:
        return NvmlProbe().device_count() > 0
    except GpuQueryError:
        return False


def test_real_probe_refuses_cleanly_without_gpu():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the real probe may say go")
    report = check_gpu(20, "24gb", SMALLER)  # the default probe: real torch and NVML
    assert not report.ok
    assert "No CUDA GPU was found" in report.reasons[0]
    assert "Training cannot start:" in report.format()


def test_real_nvml_without_driver_refuses_cleanly():
    if _nvml_works():
        pytest.skip("this machine has an NVIDIA driver")
    [reason] = check_gpu(20, "24gb", probe=_CudaSaysYes()).reasons
    assert "NVIDIA driver was not found or could not be queried" in reason


@dataclass
class FakeGpus:
    """Several GPUs that exist only in the test: GPU i answers as cards[i]."""

    cards: list[FakeProbe]

    def cuda_available(self) -> bool:
        return True

    def cuda_build(self) -> str | None:
        return "12.4"

    def device_count(self) -> int:
        return len(self.cards)

    def info(self, index: int) -> GpuInfo:
        return self.cards[index].info(index)

    def processes(self, index: int) -> list[GpuProcess]:
        return self.cards[index].processes(index)


def test_every_chosen_gpu_is_checked_and_the_one_that_fails_is_named():
    gpus = FakeGpus([FakeProbe(), FakeProbe(free_gib=5.0, procs=[OTHER_TRAINER]), FakeProbe()])
    report = check_gpus(20, "24gb", SMALLER, devices=2, probe=gpus)
    assert not report.ok and [r.device_index for r in report.reports] == [0, 1]
    low, busy = report.reasons
    assert low.startswith("GPU 1: Only 5.0 GiB free of 24.0 GiB") and busy.startswith("GPU 1: Another program")
    assert "pid 4242" in busy
    assert say_in(low, "fr").startswith("GPU 1 : Seulement 5.0 Gio libres")
    text = report.format()
    assert "GPU 0: NVIDIA GeForce RTX 3090" in text and "GPU 1: NVIDIA GeForce RTX 3090" in text
    assert "Preset 24gb needs 20 GiB free on each of the 2 GPUs." in text and "  - GPU 1: Only 5.0" in text
    assert "GPU 2" not in text  # not chosen, not checked


def test_all_means_every_gpu_the_driver_sees():
    report = check_gpus(20, "24gb", SMALLER, devices="all", probe=FakeGpus([FakeProbe()] * 3))
    assert report.ok and [r.device_index for r in report.reports] == [0, 1, 2]
    assert report.format().endswith("Preset 24gb needs 20 GiB free on each of the 3 GPUs.\nOK: training can start.")


def test_more_gpus_than_the_machine_has_refuses_saying_how_many_there_are():
    report = check_gpus(20, "24gb", SMALLER, devices=4, probe=FakeGpus([FakeProbe()] * 2))
    assert report.reasons == ["devices is 4, but the driver sees 2 GPU(s): set devices to 2 or fewer, or to all."]
    assert [r.device_index for r in report.reports] == [0, 1] and all(r.ok for r in report.reports)


@pytest.mark.parametrize("probe", [FakeProbe(), FakeProbe(free_gib=9.0, procs=[XORG, OTHER_TRAINER]),
                                   FakeProbe(cuda=False), FakeProbe(error="NVML: Driver Not Loaded")],
                         ids=["ok", "refused", "no-cuda", "no-driver"])
def test_one_gpu_reads_exactly_as_before(probe):
    one, before = check_gpus(20, "24gb", SMALLER, probe=probe), check_gpu(20, "24gb", SMALLER, probe=probe)
    assert (one.ok, one.reasons, one.format(), one.format("fr")) == (before.ok, before.reasons, before.format(),
                                                                     before.format("fr"))


def test_without_cuda_several_gpus_are_refused_once():
    report = check_gpus(20, "24gb", SMALLER, devices=2, probe=FakeProbe(cuda=False))
    [reason] = report.reasons
    assert reason.startswith("No CUDA GPU was found") and len(report.reports) == 1
