"""GPU preflight: decide, before any CUDA allocation, whether this GPU can run the chosen preset.

The trainer calls :func:`check_gpu` first. It asks PyTorch only whether CUDA is usable
(``torch.cuda.is_available()``, which creates no CUDA context) and asks the NVIDIA driver through
NVML (``pynvml``) for everything else: GPU name, total and free VRAM, driver version and the
processes on the card. It refuses, with one message per problem that says what to do, when

1. CUDA is not usable (no NVIDIA GPU, no driver, or a CPU-only build of PyTorch);
2. NVML cannot be queried (driver missing or broken, ``nvidia-ml-py`` not installed);
3. the card has less than ``min_total_gib`` of memory in total;
4. less than ``required_free_gib`` is free now (other programs hold the rest);
5. another compute (CUDA) process runs on the card: two jobs on one card run out of memory.

Graphics processes (Xorg, gnome-shell, dwm.exe, explorer.exe, browsers with hardware
acceleration) are listed and count only through the memory they hold, i.e. through rule 4.

Usage::

    report = check_gpu(20, "24gb", other_presets={"12gb": 11, "8gb": 7.5})
    print(report.format())
    if not report.ok:
        ...  # show report.reasons and stop

    report = check_gpus(20, "24gb", devices=2)     # a run on several GPUs: every one of them, by the same rules;
                                                   # each reason names its GPU (same .ok, .reasons, .format())

`python -m sdtrainer preflight` prints the report for a preset (sdtrainer.session.gate_report) and
exits 1 when it would refuse.

Tests pass a fake :class:`GpuProbe`; :class:`NvmlProbe` is the real one. ``device_index`` is the
NVML index, which matches PyTorch's ``cuda:N`` on a one-GPU machine and when every GPU is used
(NVML ignores ``CUDA_VISIBLE_DEVICES`` and orders cards by PCI bus).
"""
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

import psutil

from sdtrainer.config import ALL_DEVICES
from sdtrainer.messages import Message, say_in

GIB = 1024**3
MIB = 1024**2
# Smallest total memory the 24gb preset accepts. An RTX 3090 / 4090 has 24576 MiB: NVML reports
# 24.0 GiB, PyTorch about 23.7 GiB (it leaves out memory the driver reserves). 23.0 admits both
# and refuses 20 GB cards (RTX 3080 20GB, RTX A4500).
DEFAULT_MIN_TOTAL_GIB = 23.0

# "compute+graphics" is a process in both NVML lists ("C+G" in nvidia-smi). On Windows (WDDM)
# desktop programs such as explorer.exe report so; it counts as graphics and blocks nothing.
ProcessKind = Literal["compute", "graphics", "compute+graphics"]


class GpuQueryError(RuntimeError):
    """NVML could not be loaded or queried; the message says what failed."""


@dataclass(frozen=True)
class GpuInfo:
    """What NVML reports about one card; memory in bytes."""

    name: str
    total_bytes: int
    free_bytes: int
    driver: str


@dataclass(frozen=True)
class GpuProcess:
    """One process that holds memory on the GPU."""

    pid: int
    name: str  # from psutil, "pid N" where the process cannot be seen (other user, container)
    used_mib: int | None  # None where the driver does not say (Windows WDDM)
    kind: ProcessKind
    is_self: bool = False  # this program; listed, never blocks

    def describe(self) -> Message:
        own = Message("gate_this_program") if self.is_self else ""
        return Message("gate_process", pid=self.pid, name=self.name, own=own, kind=self.kind, used=_used(self))


def _used(process: GpuProcess) -> Message:
    return Message("gate_used_unknown") if process.used_mib is None else Message("gate_used_mib", mib=process.used_mib)


class GpuProbe(Protocol):
    """Read-only access to CUDA and the driver; :class:`NvmlProbe` is the real one."""

    def cuda_available(self) -> bool: ...

    def cuda_build(self) -> str | None:
        """CUDA version PyTorch was built with; None for a CPU-only build."""

    def device_count(self) -> int: ...

    def info(self, index: int) -> GpuInfo: ...

    def processes(self, index: int) -> list[GpuProcess]: ...


@dataclass
class GateReport:
    """What the preflight found and, if it refuses, why (one actionable message per reason)."""

    preset_name: str
    required_free_gib: float
    device_index: int = 0
    gpu_name: str | None = None  # None: no GPU could be queried
    total_gib: float | None = None
    free_gib: float | None = None
    driver: str | None = None
    processes: list[GpuProcess] = field(default_factory=list)
    reasons: list[Message] = field(default_factory=list)  # English str()s with a key, for other languages

    @property
    def ok(self) -> bool:
        """True when training can start."""
        return not self.reasons

    def format(self, lang: str = "en") -> str:
        """Human-readable report in `lang` (see sdtrainer.messages): what was found, then the verdict."""
        return "\n".join(say_in(line, lang) for line in self._found_lines() + self._verdict_lines())

    def _found_lines(self) -> list[str]:
        if self.gpu_name is None:
            return [Message("gate_gpu_missing", index=self.device_index)]
        lines = [
            Message("gate_gpu", index=self.device_index, name=self.gpu_name),
            Message("gate_memory", free=self.free_gib, total=self.total_gib),
            Message("gate_driver", driver=self.driver),
        ]
        if not self.processes:
            return lines + [Message("gate_no_processes")]
        return lines + [Message("gate_processes")] + [_indented("    ", p.describe()) for p in self.processes]

    def _verdict_lines(self) -> list[str]:
        need = Message("gate_needs", preset=self.preset_name, gib=_gib(self.required_free_gib))
        if self.ok:
            return [need, Message("gate_ok")]
        return [need, Message("gate_refused")] + [_indented("  - ", reason) for reason in self.reasons]


def check_gpu(
    required_free_gib: float,
    preset_name: str,
    other_presets: Mapping[str, float] | None = None,
    min_total_gib: float = DEFAULT_MIN_TOTAL_GIB,
    device_index: int = 0,
    probe: GpuProbe | None = None,
) -> GateReport:
    """Check whether GPU ``device_index`` can train preset ``preset_name`` right now.

    required_free_gib: free VRAM the preset needs (e.g. 20 for "24gb", 11 for "12gb", 7.5 for "8gb").
    other_presets: name -> required free GiB of the other presets; a refusal suggests the largest
        one that fits.
    min_total_gib: smallest card (total memory) the preset accepts; see DEFAULT_MIN_TOTAL_GIB.
    probe: where the facts come from; the real NVML/torch probe by default.
    Never raises for a missing GPU or driver: those are reasons in the returned report.
    """
    probe = NvmlProbe() if probe is None else probe
    report = GateReport(preset_name, required_free_gib, device_index)
    # 1. CUDA usable at all?
    if not probe.cuda_available():
        report.reasons.append(_no_cuda_reason(probe.cuda_build()))
        return report
    # 2. what the driver reports
    try:
        _read_gpu(report, probe)
    except GpuQueryError as err:
        report.reasons.append(_driver_reason(err))
        return report
    # 3. the rules
    if report.gpu_name is not None:
        report.reasons += _rule_reasons(report, dict(other_presets or {}), min_total_gib)
    return report


@dataclass
class GpusReport:
    """The gate over every GPU a run trains on: one GateReport each, all by the same rules, and the reasons that
    concern no single GPU. With one GPU it reads exactly as that GPU's GateReport."""

    reports: list[GateReport]
    run_reasons: list[Message] = field(default_factory=list)  # e.g. more GPUs asked for than there are

    @property
    def ok(self) -> bool:
        return not self.reasons

    @property
    def reasons(self) -> list[Message]:
        """Every reason to refuse; with several GPUs, each GPU's reasons name it."""
        if len(self.reports) == 1:
            return self.run_reasons + self.reports[0].reasons
        return self.run_reasons + [Message("gate_on_gpu", index=r.device_index, reason=reason)
                                   for r in self.reports for reason in r.reasons]

    def lines(self) -> list[Message]:
        """The report, a Message a line: what was found on each GPU, what the preset needs, the verdict."""
        first = self.reports[0]
        lines = [line for r in self.reports for line in r._found_lines()]
        need = (Message("gate_needs", preset=first.preset_name, gib=_gib(first.required_free_gib))
                if len(self.reports) == 1 else Message("gate_needs_each", preset=first.preset_name,
                                                       gib=_gib(first.required_free_gib), n=len(self.reports)))
        verdict = ([Message("gate_ok")] if self.ok else
                   [Message("gate_refused")] + [_indented("  - ", reason) for reason in self.reasons])
        return lines + [need] + verdict

    def format(self, lang: str = "en") -> str:
        return "\n".join(say_in(line, lang) for line in self.lines())


def check_gpus(
    required_free_gib: float,
    preset_name: str,
    other_presets: Mapping[str, float] | None = None,
    min_total_gib: float = DEFAULT_MIN_TOTAL_GIB,
    devices: int | str = 1,
    probe: GpuProbe | None = None,
) -> GpusReport:
    """check_gpu on each of the first ``devices`` GPUs ("all": every one the driver sees). Without CUDA or
    a driver to ask, the report is GPU 0's alone, which says so. Never raises for a missing GPU or driver."""
    probe = NvmlProbe() if probe is None else probe
    first = check_gpu(required_free_gib, preset_name, other_presets, min_total_gib, 0, probe)
    if first.gpu_name is None:  # no CUDA, no driver, no GPU at all: nothing more to ask
        return GpusReport([first])
    count = probe.device_count()
    asked = count if devices == ALL_DEVICES else int(devices)
    reports = [first] + [check_gpu(required_free_gib, preset_name, other_presets, min_total_gib, index, probe)
                         for index in range(1, min(asked, count))]
    too_few = [Message("gate_too_few_gpus", asked=asked, count=count)] if asked > count else []
    return GpusReport(reports, too_few)


def _read_gpu(report: GateReport, probe: GpuProbe) -> None:
    """Fill ``report`` from the probe; a missing device index becomes a reason."""
    count = probe.device_count()
    if not 0 <= report.device_index < count:
        report.reasons.append(Message("gate_no_index", index=report.device_index, count=count, last=count - 1))
        return
    info = probe.info(report.device_index)
    report.gpu_name, report.driver = info.name, info.driver
    report.total_gib, report.free_gib = info.total_bytes / GIB, info.free_bytes / GIB
    report.processes = _mark_own(probe.processes(report.device_index), os.getpid())


def _mark_own(processes: list[GpuProcess], own_pid: int) -> list[GpuProcess]:
    """Label this program's own entry so it is listed but never blocks."""
    return [replace(p, is_self=True) if p.pid == own_pid else p for p in processes]


def _rule_reasons(report: GateReport, presets: dict[str, float], min_total_gib: float) -> list[str]:
    """Rules 3-5 of the module docstring, in that order."""
    if report.total_gib < min_total_gib:
        # Closing programs cannot help a card that is too small, so the free-memory rule is skipped.
        reasons = [_too_small_reason(report, presets, min_total_gib)]
    elif report.free_gib < report.required_free_gib:
        reasons = [_low_free_reason(report, presets)]
    else:
        reasons = []
    return reasons + [_compute_reason(p) for p in report.processes if _blocks(p)]


def _blocks(process: GpuProcess) -> bool:
    return process.kind == "compute" and not process.is_self


def _best_preset(presets: dict[str, float], below: float, fits_in: float) -> tuple[str, float] | None:
    """The preset needing most memory that needs less than ``below`` and at most ``fits_in`` GiB."""
    fitting = [(name, need) for name, need in presets.items() if need < below and need <= fits_in]
    return max(fitting, key=lambda item: item[1], default=None)


def _too_small_reason(report: GateReport, presets: dict[str, float], min_total_gib: float) -> Message:
    best = _best_preset(presets, report.required_free_gib, report.total_gib)
    advice = (Message("gate_choose_smaller") if best is None else
              Message("gate_choose_preset", preset=best[0], gib=_gib(best[1])))
    return Message("gate_too_small", name=report.gpu_name, total=report.total_gib, preset=report.preset_name,
                   min=_gib(min_total_gib), advice=advice)


def _low_free_reason(report: GateReport, presets: dict[str, float]) -> Message:
    close = _close_hint(report.processes)
    best = _best_preset(presets, report.required_free_gib, report.free_gib)
    if best is None:
        advice = Message("gate_free_more", close=close, missing=report.required_free_gib - report.free_gib)
    else:
        advice = Message("gate_close_or_preset", close=close, preset=best[0], gib=_gib(best[1]))
    return Message("gate_low_free", free=report.free_gib, total=report.total_gib, preset=report.preset_name,
                   gib=_gib(report.required_free_gib), advice=advice)


def _close_hint(processes: list[GpuProcess]) -> Message:
    return Message("gate_close_listed" if any(not p.is_self for p in processes) else "gate_close_any")


def _compute_reason(process: GpuProcess) -> Message:
    return Message("gate_compute_process", pid=process.pid, name=process.name, used=_used(process))


def _no_cuda_reason(cuda_build: str | None) -> Message:
    cause = Message("gate_cpu_torch") if cuda_build is None else Message("gate_cuda_unusable", build=cuda_build)
    return Message("gate_no_cuda", cause=cause)


def _driver_reason(err: GpuQueryError) -> Message:
    return Message("gate_no_driver", error=str(err))


def _indented(prefix: str, message: Message) -> Message:
    return Message("indented", prefix=prefix, text=message)


def _gib(value: float) -> str:
    """20.0 -> '20', 7.5 -> '7.5': preset numbers as people write them."""
    return f"{value:g}"


def cpu_warning(model_is_tiny: bool) -> Message | None:
    """Warning for ``--device cpu`` (the only way to train on the CPU); None for the tiny demo model."""
    return None if model_is_tiny else Message("gate_cpu_slow")


@dataclass
class NvmlProbe:
    """The real probe: PyTorch says whether CUDA is usable, NVML reports the rest.

    Nothing here creates a CUDA context or allocates GPU memory. Every NVML failure (library
    missing, driver not loaded, query not allowed) is raised as :class:`GpuQueryError`.
    """

    def cuda_available(self) -> bool:
        import torch

        return torch.cuda.is_available()

    def cuda_build(self) -> str | None:
        import torch

        return torch.version.cuda

    def device_count(self) -> int:
        with _nvml_session() as nvml:
            return nvml.nvmlDeviceGetCount()

    def info(self, index: int) -> GpuInfo:
        with _nvml_session() as nvml:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            name, driver = nvml.nvmlDeviceGetName(handle), nvml.nvmlSystemGetDriverVersion()
        return GpuInfo(_text(name), int(memory.total), int(memory.free), _text(driver))

    def processes(self, index: int) -> list[GpuProcess]:
        with _nvml_session() as nvml:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            compute = _running(nvml, nvml.nvmlDeviceGetComputeRunningProcesses, handle)
            graphics = _running(nvml, nvml.nvmlDeviceGetGraphicsRunningProcesses, handle)
        return merge_processes(compute, graphics)


@contextmanager
def _nvml_session() -> Iterator:
    """Yield the initialised ``pynvml`` module; NVML errors and a missing package become GpuQueryError."""
    try:
        import pynvml
    except ImportError as err:
        raise GpuQueryError(f"the nvidia-ml-py package is not installed: {err}") from err
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as err:
        raise GpuQueryError(f"NVML: {err}") from err
    try:
        yield pynvml
    except pynvml.NVMLError as err:
        raise GpuQueryError(f"NVML: {err}") from err
    finally:
        with suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()


def _running(nvml, query: Callable, handle) -> list[tuple[int, int | None]]:
    """(pid, used bytes or None) per process; [] where the driver cannot list them."""
    try:
        return [(int(p.pid), p.usedGpuMemory) for p in query(handle)]
    except nvml.NVMLError_NotSupported:
        return []


def merge_processes(
    compute: list[tuple[int, int | None]],
    graphics: list[tuple[int, int | None]],
    name_of: Callable[[int], str] | None = None,
) -> list[GpuProcess]:
    """Join NVML's compute and graphics lists ((pid, used bytes)) into one entry per pid."""
    name_of = process_name if name_of is None else name_of
    used_c, used_g = dict(compute), dict(graphics)
    merged = []
    for pid in dict.fromkeys([*used_c, *used_g]):
        known = [b for b in (used_c.get(pid), used_g.get(pid)) if b is not None]
        used_mib = max(known) // MIB if known else None
        merged.append(GpuProcess(pid, name_of(pid), used_mib, _kind(pid in used_c, pid in used_g)))
    return merged


def _kind(in_compute: bool, in_graphics: bool) -> ProcessKind:
    if in_compute and in_graphics:
        return "compute+graphics"
    return "compute" if in_compute else "graphics"


def process_name(pid: int) -> str:
    """The process's name, or "pid N" when it cannot be seen (gone, other user, other container)."""
    try:
        return psutil.Process(pid).name()
    except psutil.Error:
        return f"pid {pid}"


def _text(value: str | bytes) -> str:
    """Older pynvml returns bytes."""
    return value.decode(errors="replace") if isinstance(value, bytes) else value
