"""Where the model runs and in which precision: CUDA, Apple MPS, else the CPU.

    >>> from core.device import select_runtime
    >>> rt = select_runtime("auto", "auto")          # e.g. Runtime(device='cpu', precision='bf16', channels_last=True)
    >>> with rt.autocast():
    ...     logits = model(rt.prepare(batch))

Mixed precision is used only where it is known to win: autocast on CUDA (bf16 when the GPU supports it, else
fp16), and bf16 autocast plus ``channels_last`` on CPUs with native bfloat16 instructions (AVX512-BF16 or AMX).
On other CPUs bf16 is emulated and slower than fp32, so ``auto`` keeps fp32 there; ``--precision bf16`` still
forces it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from core.errors import PetSegError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
THREADS_ENV = "PETSEG_THREADS"
DEVICES = ("auto", "cpu", "cuda", "mps")

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Runtime:
    """A device plus the precision and memory format used on it."""

    device: str
    precision: str
    channels_last: bool

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    @property
    def device_type(self) -> str:
        return self.torch_device.type

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast for the forward pass (a no-op in fp32)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=_DTYPES[self.precision])

    def prepare(self, batch: torch.Tensor) -> torch.Tensor:
        """Move an NCHW float batch to the device in the memory format the model expects."""
        batch = batch.to(self.torch_device, non_blocking=True)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        model = model.to(self.torch_device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def describe(self) -> str:
        layout = ", channels_last" if self.channels_last else ""
        return f"{self.device} {self.precision}{layout}, {torch.get_num_threads()} threads"


def cpu_flags() -> set[str]:
    """CPU feature flags from /proc/cpuinfo (empty where that file does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when the CPU executes bfloat16 matrix math natively (AVX512-BF16 or AMX-BF16)."""
    flags = cpu_flags()
    if flags:
        return bool({"avx512_bf16", "amx_bf16"} & flags)
    # No /proc/cpuinfo (macOS, Windows): ask oneDNN, which answers for the same instructions.
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:
        return False


def available_cores() -> int:
    """Cores this process may run on (respects taskset/cgroup affinity where the OS reports it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def busy_cores_elsewhere(samples: int = 8, interval_s: float = 0.01) -> int:
    """Roughly how many cores other processes keep busy right now (Linux /proc/loadavg; 0 elsewhere).

    The 4th field of /proc/loadavg counts runnable threads at this instant, this one included; the minimum over a
    few samples filters out short blips.
    """
    counts = []
    for _ in range(samples):
        try:
            running = Path("/proc/loadavg").read_text().split()[3].split("/")[0]
        except (OSError, IndexError):
            return 0
        counts.append(int(running))
        time.sleep(interval_s)
    return max(0, min(counts) - 1)


def configure_cpu_threads(threads: int | None = None) -> int:
    """Intra-op threads for the CPU: $PETSEG_THREADS, else one per core not busy elsewhere (at least one).

    Two processes that each spin one OpenMP thread per core on the same cores slow each other down by far more
    than half (measured here: 100x on 2 cores), so a second PetSeg process (a training next to an evaluation)
    takes only the cores that are free. Inter-op parallelism is off: a U-Net forward is one chain of ops.
    """
    if threads is None:
        env = os.environ.get(THREADS_ENV, "").strip()
        if env.isdigit() and int(env) > 0:
            threads = int(env)
        else:
            threads = max(1, available_cores() - busy_cores_elsewhere())
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # only settable before the first parallel op
        torch.set_num_interop_threads(1)
    return threads


def resolve_device(name: str = "auto") -> str:
    name = (name or "auto").lower()
    if name not in DEVICES and not name.startswith("cuda:"):
        raise PetSegError(f"unknown device {name!r}: use one of {', '.join(DEVICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PetSegError("--device cuda was asked for but no CUDA GPU is available: use --device cpu or auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise PetSegError("--device mps was asked for but Apple MPS is not available: use --device cpu or auto")
    return name


def resolve_precision(precision: str, device: str) -> str:
    precision = (precision or "auto").lower()
    if precision not in PRECISIONS:
        raise PetSegError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    kind = torch.device(device).type
    if precision == "auto":
        if kind == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if kind == "cpu" and cpu_has_native_bf16():
            return "bf16"
        return "fp32"
    if precision == "fp16" and kind == "cpu":
        raise PetSegError("fp16 autocast is not supported on the CPU: use --precision bf16 or fp32")
    return precision


def select_runtime(device: str = "auto", precision: str = "auto") -> Runtime:
    """Pick the device and precision (see the module docstring) and set CPU threads."""
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    if torch.device(dev).type == "cpu":
        configure_cpu_threads()
    # channels_last is what makes oneDNN's bf16 convolutions fast on the CPU; on GPUs it helps with autocast.
    channels_last = prec != "fp32" and torch.device(dev).type in ("cpu", "cuda")
    return Runtime(device=dev, precision=prec, channels_last=channels_last)


@contextlib.contextmanager
def inference(runtime: Runtime) -> Iterator[None]:
    with torch.inference_mode(), runtime.autocast():
        yield
