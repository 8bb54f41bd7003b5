"""Where a search's trials run: an executor maps a picklable function over tasks and hands back each result as
it finishes. Independent of any strategy: FBNetV3's JointNAS trains its candidates through it, and the
pipeline or a Ray executor (the scale-out issue) can implement the same protocol.

* :class:`SequentialExecutor`: in this process, one task after the other.
* :class:`ProcessExecutor`: a local pool of ``workers`` processes (spawn context: a fresh interpreter, no
  forked torch state), each running ``threads`` torch threads with the tuned allocator.
* :class:`RayExecutor`: Ray tasks of ``threads`` CPUs each, at most ``workers`` at a time, on a local Ray
  (``address: local``, started and stopped here) or a running cluster (``auto`` or ``HOST:PORT``: ``ray start
  --head`` / ``ray start --address``). A worker process that dies is retried up to ``max_retries`` times.

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

EXECUTOR_KINDS = ("sequential", "process", "ray")


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


def run_command(argv: list[str]) -> int:
    """An ``fbnas`` command line in this process (a worker's task: ``["train", "--arch", ...]``); its exit status."""
    from fbnas.cli import main

    return main(list(argv))


def _ray_call(fn: Callable[[Any], Any], task: Any, threads: int) -> Any:
    """A Ray worker runs one task: ``threads`` torch threads, the tuned allocator, then ``fn(task)``."""
    import torch

    from fbnas.runtime import tune_allocator

    torch.set_num_threads(int(threads))
    tune_allocator()
    return fn(task)


class RayExecutor:
    """Tasks on Ray: ``workers`` at a time, ``threads`` CPUs (and torch threads) each; a task whose worker process
    dies is run again, up to ``max_retries`` times (Ray's task retries), and the tasks already finished are kept.

    ``address``: ``local`` starts a Ray of ``workers x threads`` CPUs in this machine (and stops it in
    :meth:`close`); ``auto`` joins the cluster this machine belongs to (``ray start --head`` / ``ray start
    --address HEAD:6379`` on every node), ``HOST:PORT`` a given one. When Ray is already initialised in this
    process (a notebook, a test) it is used as it is. The task function and its tasks must be importable on
    every node (``pip install fbnas`` there; a shared run folder for the trials' files).
    """

    def __init__(self, workers: int = 2, threads: int = 1, address: str = "local", max_retries: int = 2) -> None:
        if workers < 1 or threads < 1 or max_retries < 0:
            raise FbnasError(f"executor: workers and threads must be >= 1 and max_retries >= 0, got {workers} x "
                             f"{threads}, {max_retries}")
        self.workers, self.threads, self.address, self.max_retries = int(workers), int(threads), address, max_retries
        self._owns = False
        self._remote: Any = None

    def _ray(self) -> Any:
        try:
            import ray
        except ModuleNotFoundError:
            raise FbnasError("executor.kind: ray needs Ray (pip install ray)") from None
        if not ray.is_initialized():
            env = {"env_vars": {"OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}}
            try:
                if self.address == "local":
                    ray.init(num_cpus=self.workers * self.threads, include_dashboard=False, runtime_env=env,
                             log_to_driver=False)
                else:
                    ray.init(address=self.address, runtime_env=env, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                raise FbnasError(f"executor.address: cannot join Ray at {self.address!r} ({first}); start a cluster "
                                 "with `ray start --head` or use address: local") from None
            self._owns = True
        if self._remote is None:
            self._remote = ray.remote(_ray_call).options(num_cpus=self.threads, max_retries=self.max_retries,
                                                         retry_exceptions=False)
        return ray

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any],
            on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
        if not tasks:
            return []
        ray = self._ray()
        from ray.exceptions import RayTaskError, WorkerCrashedError

        out: list[Any] = [None] * len(tasks)
        pending: dict[Any, int] = {}
        queue = list(range(len(tasks)))
        try:
            while queue or pending:
                while queue and len(pending) < self.workers:
                    i = queue.pop(0)
                    pending[self._remote.remote(fn, tasks[i], self.threads)] = i
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    i = pending.pop(ref)
                    try:
                        out[i] = ray.get(ref)
                    except WorkerCrashedError:
                        raise FbnasError(f"executor ray: task {i} lost its worker {self.max_retries + 1} times "
                                         "(executor.max_retries); the finished tasks are kept: run again with "
                                         "--resume") from None
                    except RayTaskError as e:
                        cause = e.cause if isinstance(getattr(e, "cause", None), BaseException) else None
                        if cause is not None:
                            raise cause from None
                        raise
                    if on_result is not None:
                        on_result(i, out[i])
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        return out

    def close(self) -> None:
        if self._owns:
            import ray

            ray.shutdown()
            self._owns = False
        self._remote = None

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def make_executor(kind: str, workers: int = 1, threads: int = 1, address: str = "local",
                  max_retries: int = 2) -> SequentialExecutor | ProcessExecutor | RayExecutor:
    """``sequential`` (``threads`` torch threads in this process), ``process`` (``workers`` x ``threads``) or
    ``ray`` (``workers`` tasks x ``threads`` CPUs on Ray at ``address``, ``max_retries`` per lost worker)."""
    if kind == "sequential":
        return SequentialExecutor(threads)
    if kind == "process":
        return ProcessExecutor(workers, threads)
    if kind == "ray":
        return RayExecutor(workers, threads, address, max_retries)
    raise FbnasError(f"executor.kind: must be one of {', '.join(EXECUTOR_KINDS)}, got {kind!r}")
