"""Running as one of several processes under torchrun: who we are, the process group, and the few collectives
training and evaluation need. One process (no torchrun, or ``--nproc_per_node=1``) runs without a group.

    >>> from core import distributed
    >>> with distributed.session("cpu") as dist:        # gloo on the CPU, NCCL with CUDA; torchrun's env vars
    ...     dist.rank, dist.world_size, dist.is_main     # (0, 1, True) in one process
    ...     saved = dist.from_main(lambda: read_on_rank0())  # rank 0 computes, every rank gets it (or its error)
    ...     total, count = dist.sum([loss_sum, n])     # all-reduced in fp32 (gloo refuses bf16)
    ...     dist.share_buffers(model)                    # rank 0's BatchNorm statistics on every rank
    ...     dist.barrier()
    >>> launch_command(2, ["core", "train", "--run", "r1"])
    ['torchrun', '--standalone', '--nproc_per_node=2', '-m', '--', 'core', 'train', '--run', 'r1']

Failures end the job, never hang it: the group has a timeout (``$PETSEG_DIST_TIMEOUT`` seconds, default 600),
torchrun stops every rank once one exits with an error, SIGTERM from torchrun becomes :class:`RankStopped`
(so rank 0 records the failure in progress.json and train.log), and a rank whose torchrun agent dies gets
SIGTERM too (Linux ``PR_SET_PDEATHSIG``): torchrun starts its workers in sessions of their own, so nothing
else would reach them.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import os
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as torch_dist

from core.errors import PetSegError

TIMEOUT_ENV = "PETSEG_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 600
T = TypeVar("T")


class RankStopped(PetSegError):
    """torchrun stopped this rank: another rank failed, or the job was cancelled."""


@dataclass(frozen=True)
class Context:
    """This process's place in the job. ``world_size`` 1: no process group, every collective is a no-op."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def describe(self) -> str:
        return f"rank {self.rank} of {self.world_size}"

    def barrier(self) -> None:
        if self.active:
            torch_dist.barrier()

    def sum(self, values: list[float]) -> list[float]:
        """``values`` summed over all ranks, in fp32: validation sums are Python floats from bf16 autocast, and gloo
        rejects bf16 tensors in collectives."""
        if not self.active:
            return [float(v) for v in values]
        tensor = torch.tensor(values, dtype=torch.float32, device=_collective_device())
        torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.SUM)
        return [float(v) for v in tensor.cpu()]

    def from_main(self, compute: Callable[[], T]) -> T:
        """Rank 0 calls ``compute``; every rank returns its (picklable) result, or raises the PetSegError it raised
        with the same message, so a refusal on rank 0 (run exists, locked) ends every rank cleanly."""
        if not self.active:
            return compute()
        box: list[Any] = [None]
        if self.is_main:
            try:
                value = compute()
            except PetSegError as exc:
                box[0] = ("error", str(exc))
                torch_dist.broadcast_object_list(box, src=0, device=_collective_device())
                raise
            box[0] = ("ok", value)
        torch_dist.broadcast_object_list(box, src=0, device=_collective_device())
        status, value = box[0]
        if status == "error":
            raise PetSegError(value)
        return value

    def share_buffers(self, module: torch.nn.Module) -> None:
        """Give every rank rank 0's buffers (BatchNorm running statistics). DDP broadcasts them only at the start
        of each forward, so after an epoch's last step each rank holds statistics updated by its own part of the
        batch; validating with those would score a mix of models, none of them the one rank 0 saves."""
        if not self.active:
            return
        for buffer in module.buffers():
            torch_dist.broadcast(buffer.data, src=0)

    def gather(self, value: T) -> list[T]:
        """Every rank's (picklable) ``value``, in rank order, on every rank."""
        if not self.active:
            return [value]
        out: list[Any] = [None] * self.world_size
        torch_dist.all_gather_object(out, value)
        return out


SINGLE = Context()


def current() -> Context:
    """The context torchrun's environment describes (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    except ValueError as exc:
        raise PetSegError(f"torchrun's environment is malformed ({exc}): start the job with torchrun") from exc
    if world < 1 or not 0 <= rank < world or not 0 <= local_rank < max(1, local_world):
        raise PetSegError(f"torchrun's environment is inconsistent: RANK={rank}, WORLD_SIZE={world}, "
                          f"LOCAL_RANK={local_rank}, LOCAL_WORLD_SIZE={local_world}")
    return Context(rank, world, local_rank, local_world)


def _collective_device() -> torch.device:
    # NCCL moves only CUDA tensors; gloo only CPU ones.
    if torch_dist.is_initialized() and torch_dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def device_for(ctx: Context, device: str) -> str:
    """The device this rank runs on: its own GPU (``cuda:<local rank>``) when training on CUDA."""
    if ctx.active and device.startswith("cuda"):
        return f"cuda:{ctx.local_rank}"
    return device


def share_cores(ctx: Context) -> None:
    """Give each rank on this machine its share of the cores ($PETSEG_THREADS, unless set already): two ranks
    spinning one OpenMP thread per core each on the same cores slow each other down many times over."""
    from core.device import THREADS_ENV, available_cores

    if ctx.active and not os.environ.get(THREADS_ENV, "").strip():
        os.environ[THREADS_ENV] = str(max(1, available_cores() // ctx.local_world_size))


@contextlib.contextmanager
def session(device: str) -> Iterator[Context]:
    """Join torchrun's process group for the block (NCCL with CUDA, else gloo), and leave it afterwards."""
    ctx = current()
    if not ctx.active or torch_dist.is_initialized():  # one process, or a group this process has joined already
        yield ctx
        return
    _die_with_parent()
    previous = signal.signal(signal.SIGTERM, _stopped)
    share_cores(ctx)
    backend = "nccl" if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()) else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(ctx.local_rank)
    torch_dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s()))
    try:
        yield ctx
    finally:
        with contextlib.suppress(Exception):  # a broken group (a rank died) cannot be torn down cleanly
            torch_dist.destroy_process_group()
        signal.signal(signal.SIGTERM, previous)


def timeout_s() -> int:
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if text.isdigit() and int(text) > 0:
        return int(text)
    return DEFAULT_TIMEOUT_S


def describe_failure(exc: BaseException) -> str:
    """``exc`` in one line; a collective broken by a lost peer says so first, then what the backend said."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
    lowered = text.lower()
    if isinstance(exc, torch_dist.DistError) or (isinstance(exc, RuntimeError) and ("gloo" in lowered
                                                                                    or "nccl" in lowered)):
        return f"lost contact with another rank (it died, was killed or hangs): {text}"
    return text


_failing = False


def failing() -> None:
    """This rank is recording its failure and will exit: torchrun's SIGTERM must not cut the record short."""
    global _failing
    _failing = True


def _stopped(signum: int, _frame: object) -> None:
    if _failing:
        return
    signal.signal(signum, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise RankStopped("stopped by torchrun (SIGTERM): another rank failed or the job was cancelled")


def _die_with_parent() -> None:
    """SIGTERM this rank when its torchrun agent dies (Linux); elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() == 1:  # the agent died before prctl took effect
            raise RankStopped("torchrun's agent is gone: this rank stops")


def launch_command(processes: int, module_args: list[str], python: str | None = None) -> list[str]:
    """The torchrun command running ``python -m <module_args...>`` in ``processes`` processes on this machine.

    ``--standalone`` picks a free port for the rendezvous (two jobs at once do not collide on torchrun's default
    29500); ``-m --`` matters: torchrun's own parser would take our ``--run`` for an abbreviation of its
    ``--run-path``. ``python``: run torchrun as ``<python> -m torch.distributed.run`` (the same program).
    """
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise PetSegError(f"processes must be a positive integer, not {str(processes)[:20]!r}")
    launcher = [python, "-m", "torch.distributed.run"] if python else ["torchrun"]
    return [*launcher, "--standalone", f"--nproc_per_node={processes}", "-m", "--", *module_args]


def max_processes() -> int:
    """How many processes one machine can usefully run: one per CUDA device, else one per core."""
    from core.device import available_cores

    return torch.cuda.device_count() if torch.cuda.is_available() else available_cores()


def default_processes() -> int:
    """One process per CUDA device; one on the CPU (ranks would only split the same cores)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 1
