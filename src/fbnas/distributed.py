"""Data-parallel runs on PyTorch's own engine: ``torchrun --nproc_per_node N -m fbnas ...`` with the same
arguments as a single process (``fbnas train`` and every supernet search: DNAS, DMaskingNAS, FP-NAS).

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`init` joins the process group (gloo on CPU,
NCCL where GPUs are present). Every rank builds the same model from the same seed and reads its own shard of
every global batch (``BatchLoader(shard=...)``: the batch size is the *global* batch). After each backward,
:func:`sync_step` all-reduces the gradients (the weights' or the architecture parameters') together with the
step's statistics (loss, correct, images) in one flat all-reduce, so the ranks keep identical parameters and
see the same global loss (a divergence stops every rank at the same step). Architecture samples are keyed by
(seed, step) and are the same on every rank. Batch norm keeps per-rank batch statistics (no SyncBN); its
running statistics are averaged over the ranks at the end of every epoch (:func:`average_buffers`, before a
checkpoint), so the checkpoint rank 0 writes is every rank's state. Only rank 0 writes the run folder; the other
ranks receive what it reads (:func:`from_writer`). Without torchrun every function here is the identity of a
single process.

``FBNAS_DDP_CHECK=1`` checks after every optimizer step, by all-gather, that every rank holds the same
parameters (a debugging aid and what the tests use); a rank that drifted is a one-line error.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

if TYPE_CHECKING:
    import torch

T = TypeVar("T")

CHECK_ENV = "FBNAS_DDP_CHECK"
checks_done = 0  # how many FBNAS_DDP_CHECK comparisons this process ran (tests read it)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_writer(self) -> bool:
        """Rank 0 writes run folders, tables and reports; the other ranks only compute."""
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int] | None:
        """``(rank, size)`` for a loader's shard, None in a single process."""
        return (self.rank, self.size) if self.size > 1 else None


def world() -> World:
    """This process's place in the job: the joined process group, else torchrun's environment, else one process."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    except ImportError:  # pragma: no cover - torch without distributed
        pass
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    return World(int(os.environ.get("RANK", "0")), size, int(os.environ.get("LOCAL_RANK", "0")))


def active() -> bool:
    """Whether this process is one rank of a joined process group of more than one."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init(backend: str | None = None) -> World:
    """Join the process group once when torchrun started this process: NCCL when every local rank has a GPU of its
    own (the reductions go through it; fbnas computes on the CPU), else gloo."""
    w = world()
    if w.size > 1:
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", str(w.size)))
            use_cuda = backend != "gloo" and torch.cuda.is_available() and torch.cuda.device_count() >= local_ranks
            if use_cuda:
                torch.cuda.set_device(w.local_rank)
            dist.init_process_group(backend or ("nccl" if use_cuda else "gloo"))
    return world()


def shutdown(finished: bool = False) -> None:
    """Leave the process group. After a command that ``finished`` on this rank, first wait (at most a minute)
    until every rank has: a rank that tears down its gloo connections while a peer still uses them can abort
    the peer ("terminate called without an active exception"). After a failure, no wait: the peer may be in a
    collective this rank will never join, and torchrun ends it."""
    import datetime

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if finished:
            try:
                if dist.get_backend() == "gloo":
                    dist.monitored_barrier(timeout=datetime.timedelta(seconds=60))
                else:
                    dist.barrier()
            except RuntimeError:  # a peer that did not arrive: leave anyway
                pass
        dist.destroy_process_group()


def end_process(code: int = 0) -> NoReturn:
    """End this rank's process now, its process group left and its streams flushed, without the interpreter's
    normal exit. That exit runs C++ static destructors while gloo's threads may still run, and can abort a rank
    whose work is done (SIGABRT, "terminate called without an active exception": seen in CI in the 2-rank tests;
    the finalization abort of pytorch PR 179291). Every file is written atomically before, so nothing is lost."""
    shutdown(finished=code == 0)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _device() -> torch.device:
    import torch
    import torch.distributed as dist

    return torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")


def sync_step(params: list[torch.nn.Parameter], stats: dict[str, float], n: int) -> tuple[dict[str, float], int]:
    """After a backward on this rank's ``n`` images: the gradients of ``params`` become the global batch's
    (each rank's weighted by its share of the images: exact when shards differ in size) and ``stats`` (per-image
    means on this rank; ``correct`` and other counts are summed) the global ones, in one all-reduce. Returns
    (global stats, global images); the identity in a single process."""
    if not active():
        return stats, n
    import torch
    import torch.distributed as dist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    keys = sorted(stats)
    flat = torch.cat([g.reshape(-1) for g in grads] +
                     [torch.tensor([float(stats[k]) if k == "correct" else float(stats[k]) * n for k in keys] +
                                   [float(n)], dtype=grads[0].dtype if grads else torch.float32)])
    flat = flat.to(_device())
    flat[: flat.numel() - len(keys) - 1].mul_(float(n))
    dist.all_reduce(flat)
    total = float(flat[-1])
    flat[: flat.numel() - len(keys) - 1].div_(max(total, 1.0))
    offset = 0
    for p, g in zip(params, grads, strict=True):
        k = g.numel()
        chunk = flat[offset:offset + k].view_as(g).to(g.device)
        if p.grad is None:
            p.grad = chunk.clone()
        else:
            p.grad.copy_(chunk)
        offset += k
    tail = flat[offset:].double().cpu().tolist()
    out = {k: (tail[i] if k == "correct" else tail[i] / max(total, 1.0)) for i, k in enumerate(keys)}
    return out, int(round(total))


def all_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over the ranks (a copy; ``t`` itself in a single process)."""
    if not active():
        return t
    import torch.distributed as dist

    out = t.detach().clone().to(_device())
    dist.all_reduce(out)
    return out.to(t.device)


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` holds on any rank (every rank gets the same answer); ``flag`` in a single process."""
    if not active():
        return flag
    import torch
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0], device=_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def average_buffers(*modules: Any) -> None:
    """Average every floating buffer (BN running statistics) of ``modules`` over the ranks: the running averages
    are linear in the batches, so the mean of the per-rank averages is what one process seeing every rank's
    batches would hold. Integer buffers (``num_batches_tracked``) are the same on every rank."""
    if not active():
        return
    import torch
    import torch.distributed as dist

    bufs = [b for m in modules if m is not None for b in m.buffers() if b.is_floating_point()]
    if not bufs:
        return
    flat = torch.cat([b.detach().reshape(-1).to(_device()) for b in bufs])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for b in bufs:
        k = b.numel()
        b.copy_(flat[offset:offset + k].view_as(b))
        offset += k


def from_writer(fn: Callable[[], T]) -> T:
    """``fn()`` on rank 0 (the run folder's work: checks, reading a checkpoint), its value sent to every rank, so
    the other ranks need no shared file system; an error ``fn`` raises (a refusal) is raised on every rank, so
    every rank stops with the same line. In a single process, ``fn()``."""
    if not active():
        return fn()
    import torch.distributed as dist

    box: list[Any] = [None]
    if dist.get_rank() == 0:
        try:
            box = [("ok", fn())]
        except Exception as e:  # noqa: BLE001 - sent to the other ranks, raised again below
            box = [("error", e)]
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise value
    return value


@contextlib.contextmanager
def writer_first() -> Iterator[bool]:
    """Rank 0 runs the block first (it writes: a latency table it measures), the others after it (they find what it
    wrote); yields whether this rank is the writer."""
    if not active():
        yield True
        return
    import torch.distributed as dist

    if dist.get_rank() != 0:
        dist.barrier()
    try:
        yield dist.get_rank() == 0
    finally:
        if dist.get_rank() == 0:
            dist.barrier()


def all_equal(tensors: list[torch.Tensor]) -> bool:
    """Whether every rank holds the same ``tensors`` (checked by all-gather; tests and debugging)."""
    if not active():
        return True
    import torch
    import torch.distributed as dist

    flat = torch.cat([t.detach().reshape(-1).double() for t in tensors]).to(_device())
    gathered = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    return all(torch.equal(gathered[0], g) for g in gathered[1:])


def check_identical(params: list[torch.Tensor], what: str) -> None:
    """With ``FBNAS_DDP_CHECK=1``: every rank holds the same ``params`` after an optimizer step, else one line."""
    global checks_done
    if os.environ.get(CHECK_ENV) != "1" or not active():
        return
    checks_done += 1
    if not all_equal(params):
        from fbnas.errors import FbnasError

        raise FbnasError(f"{CHECK_ENV}: the ranks hold different {what} after an optimizer step")


def local_rows(t: torch.Tensor, global_rows: int) -> torch.Tensor:
    """This rank's rows of a per-image tensor drawn for the whole global batch (the same split as the loader's)."""
    w = world()
    if not active() or t.dim() == 0 or t.shape[0] != global_rows:
        return t
    import torch

    return torch.tensor_split(t, w.size)[w.rank]


def global_rows(n_local: int) -> int:
    """The global batch of a step whose shard on this rank holds ``n_local`` images (shards of equal size: the
    searches drop the last partial batch)."""
    return n_local * world().size if active() else n_local


def free_port() -> int:
    """A free TCP port on this machine (a local process group's MASTER_PORT: benchmarks, tests)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
