"""Where a search's trials run: an executor maps a picklable function over tasks and hands back each result as
it finishes. Independent of any strategy: FBNetV3's JointNAS trains its candidates through it, and the
pipeline or a Ray executor (the scale-out issue) can implement the same protocol.

* :class:`SequentialExecutor`: in this process, one task after the other.
* :class:`ProcessExecutor`: a local pool of ``workers`` processes (spawn context: a fresh interpreter, no
  forked torch state), each running ``threads`` torch threads with the tuned allocator.

Both call ``on_result(index, result)`` in the calling process as each task finishes (progress, persistence
by the caller); the task function itself may persist its result before it returns, so a finished task is on
disk before its worker starts the next one. Results come back in task order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

from fbnas.errors import FbnasError

T = TypeVar("T")
R = TypeVar("R")

EXECUTOR_KINDS = ("sequential", "process")


@runtime_checkable
class Executor(Protocol):
    """Runs ``fn`` over ``tasks``; ``on_result(i, result)`` as each finishes; the results in task order."""

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any],
            on_result: Callable[[int, Any], None] | None = None) -> list[Any]: ...

    def close(self) -> None: ...


class SequentialExecutor:
    """Every task in this process, in order (torch threads as the process has them)."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any],
            on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
        from fbnas.runtime import set_threads, tune_allocator

        tune_allocator()
        set_threads(self.threads)
        out = []
        for i, task in enumerate(tasks):
            result = fn(task)
            if on_result is not None:
                on_result(i, result)
            out.append(result)
        return out

    def close(self) -> None:
        pass

    def __enter__(self) -> SequentialExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _watch_parent(parent: int, interval: float = 0.5) -> None:
    """End this worker once the process that started the pool is gone (killed, not shut down): an orphaned
    worker would otherwise wait on its task queue forever."""
    import time

    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(1)


def _init_worker(threads: int, parent: int) -> None:
    """Worker start-up: thread count (torch and the BLAS pools), allocator, and a watch on the parent."""
    import threading

    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    os.environ["FBNAS_PARENT_PID"] = str(parent)
    import torch

    from fbnas.runtime import tune_allocator

    torch.set_num_threads(int(threads))
    tune_allocator()
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="fbnas-parent-watch").start()


def parent_alive() -> bool:
    """In a :class:`ProcessExecutor` worker: whether the process that started the pool still runs (a worker
    whose driver was killed stops its task instead of finishing it as an orphan). True elsewhere."""
    parent = os.environ.get("FBNAS_PARENT_PID")
    return parent is None or os.getppid() == int(parent)


class ProcessExecutor:
    """A local process pool: ``workers`` spawned processes x ``threads`` torch threads each."""

    def __init__(self, workers: int = 2, threads: int = 1) -> None:
        if workers < 1 or threads < 1:
            raise FbnasError(f"executor: workers and threads must be >= 1, got {workers} x {threads}")
        self.workers, self.threads = int(workers), int(threads)
        self._pool = None

    def _get_pool(self):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init_worker, initargs=(self.threads, os.getpid()))
        return self._pool

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any],
            on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
        from concurrent.futures import FIRST_COMPLETED, wait

        if not tasks:
            return []
        pool = self._get_pool()
        futures = {pool.submit(fn, task): i for i, task in enumerate(tasks)}
        out: list[Any] = [None] * len(tasks)
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in sorted(done, key=lambda f: futures[f]):
                    i = futures[f]
                    out[i] = f.result()
                    if on_result is not None:
                        on_result(i, out[i])
        except BaseException:
            for f in pending:
                f.cancel()
            raise
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> ProcessExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def make_executor(kind: str, workers: int = 1, threads: int = 1) -> SequentialExecutor | ProcessExecutor:
    """``sequential`` (``threads`` torch threads in this process) or ``process`` (``workers`` x ``threads``)."""
    if kind == "sequential":
        return SequentialExecutor(threads)
    if kind == "process":
        return ProcessExecutor(workers, threads)
    raise FbnasError(f"executor.kind: must be one of {', '.join(EXECUTOR_KINDS)}, got {kind!r}")
