"""``fbnas bench ddp``: what scale-out buys on this machine, both measured in one run, as ratios.

* **supernet**: the weight step of a DNAS search (Gumbel sample, forward, cross-entropy, backward, SGD) at one
  global batch, as images per second: 2 ranks x 1 thread (gloo, :mod:`fbnas.distributed`: half the batch per
  rank, gradients all-reduced) over 1 process x 2 threads. Each variant runs in fresh processes.
* **jointnas**: JointNAS coarse-stage trials (the smoke config's candidates trained on the proxy,
  :func:`fbnas.search.jointnas.trials.run_trial`) per hour: Ray with 2 workers x 1 thread over the sequential
  executor with 2 threads (after one untimed trial that loads the data). Ray's start-up is timed apart
  (``ray_init_s``, with one untimed trial per worker: their imports and data) and not in the rate.

Both parts also time one process with 1 thread, as context: a ratio above 2 means that 2 intra-op threads are
slower than 1 on this machine (small per-layer work, a shared CPU), not that more processes scale better than
linearly.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from fbnas.bench import register_bench, run_worker


def _add_args(p) -> None:
    p.add_argument("--space", default="fbnet_v1", help="layer-wise search space of the supernet")
    p.add_argument("--input-size", type=int, default=28)
    p.add_argument("--width", type=float, default=0.5, help="width multiplier of the space")
    p.add_argument("--mode", default="hard", choices=["hard", "soft"], help="supernet mode")
    p.add_argument("--batch-size", type=int, default=64, help="the global batch")
    p.add_argument("--steps", type=int, default=12, help="timed weight steps per variant")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--trials", type=int, default=6, help="JointNAS trials per executor")
    p.add_argument("--trial-images", type=int, default=1536, help="proxy training images of a trial")
    p.add_argument("--trial-epochs", type=int, default=3, help="proxy epochs of a trial")
    p.add_argument("--skip-jointnas", action="store_true", help="only the supernet part")


def _steps(rank: int, world: int, port: int, opts: dict, queue: Any) -> dict:
    """Time ``opts['steps']`` weight steps on this rank (one process when ``world`` is 1)."""
    os.environ.update(OMP_NUM_THREADS=str(opts["threads"]))
    import torch

    from fbnas import distributed
    from fbnas.runtime import tune_allocator

    tune_allocator()
    torch.set_num_threads(int(opts["threads"]))
    if world > 1:
        import torch.distributed as dist

        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
        dist.init_process_group("gloo", rank=rank, world_size=world)
    import torch.nn.functional as F

    from fbnas.search.supernet import Supernet
    from fbnas.seeding import make_generator, step_generator
    from fbnas.space import load_space

    space = load_space(opts["space"], input_size=opts["input_size"], in_channels=1, width_multiplier=opts["width"])
    torch.manual_seed(0)
    net = Supernet(space, 10, mode=opts["mode"]).to(memory_format=torch.channels_last)
    params = net.weight_parameters()
    opt = torch.optim.SGD(params, lr=0.05, momentum=0.9)
    g = make_generator(0, "bench ddp")
    b = int(opts["batch_size"])
    x = torch.randn(b, 1, opts["input_size"], opts["input_size"], generator=g)
    y = torch.randint(0, 10, (b,), generator=g)
    if world > 1:
        x, y = torch.tensor_split(x, world)[rank], torch.tensor_split(y, world)[rank]
    x = x.contiguous(memory_format=torch.channels_last)

    def step(i: int) -> None:
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            sample = net.arch_weights(5.0, step_generator(0, i))
        F.cross_entropy(net(x, sample), y).backward()
        distributed.sync_step(params, {}, len(y))
        opt.step()

    for i in range(opts["warmup"]):
        step(i)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    t0 = time.perf_counter()
    for i in range(opts["steps"]):
        step(opts["warmup"] + i)
    if world > 1:
        dist.barrier()
    seconds = time.perf_counter() - t0
    out = {"seconds": seconds, "images_per_s": b * opts["steps"] / seconds}
    if queue is not None and rank == 0:
        queue.put(out)
    if world > 1:
        distributed.end_process(0)  # a spawned rank: leaves the group and ends here (see its docstring)
    return out


def _worker(opts: dict) -> dict:
    """One supernet variant in this (fresh) process: 1 process, or ``world`` spawned ranks."""
    world = int(opts["world"])
    if world == 1:
        return _steps(0, 1, 0, opts, None)
    import torch.multiprocessing as mp

    from fbnas.distributed import free_port

    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.start_processes(_steps, args=(world, free_port(), opts, queue), nprocs=world, join=True,
                       start_method="spawn")
    return queue.get()


def smoke_trial_tasks(out: str | Path, n: int, threads: int = 1, proxy: dict[str, Any] | None = None) -> list[Any]:
    """The first ``n`` coarse-stage candidates of the JointNAS smoke config, as trials under ``out/trials/``
    trained with ``threads`` torch threads each (benchmarks, the executor tests); ``proxy`` overrides fields of
    its ``jointnas.proxy`` section (a smaller proxy)."""
    from fbnas.runs import RunFolder
    from fbnas.search.jointnas.coarse import Context, make_task
    from fbnas.search.jointnas.spaces import Constraints
    from fbnas.search.jointnas.trials import ProxyData, proxy_tensors
    from fbnas.search.strategy import get_strategy
    from fbnas.seeding import STREAMS

    strategy = get_strategy("jointnas")
    doc = copy.deepcopy(strategy.smoke_config)
    doc["jointnas"]["executor"] = {"kind": "sequential", "threads": int(threads)}
    doc["jointnas"]["proxy"] = {**doc["jointnas"]["proxy"], **(proxy or {})}
    cfg = strategy.config_model.parse(doc, "jointnas smoke config")
    space = strategy.space(cfg)
    jn = cfg.jointnas
    data = ProxyData(cfg.data.name, cfg.data.dir, jn.proxy.train_images, jn.proxy.val_images, cfg.seed,
                     cfg.data.channels_last, jn.proxy.bn_images)
    full = space.parts["arch"].build(space.parts["arch"].default_sample()).arch
    num_classes = int(proxy_tensors(data, full.input_size)[0].num_classes)
    ctx = Context(space, cfg, RunFolder(out, "search"), Constraints(space, {}, num_classes), data, num_classes,
                  dict(jn.proxy.recipe), None, print)
    return [make_task(ctx, f"t{i:03d}", "coarse", space.sample(cfg.seed, i, STREAMS["samples"]), None)
            for i in range(n)]


def _trials(opts: dict) -> dict:
    """JointNAS trials per hour: sequential x 2 threads, then Ray 2 workers x 1 thread (in this process)."""
    from fbnas.search.executors import RayExecutor, SequentialExecutor
    from fbnas.search.jointnas.trials import run_trial

    n = int(opts["trials"])
    proxy = {"train_images": int(opts["trial_images"]), "val_images": 256, "epochs": int(opts["trial_epochs"]),
             "bn_images": 256}
    out: dict[str, Any] = {"trials": n, "proxy": proxy}

    def tasks_in(folder: Path, count: int, threads: int) -> list[Any]:
        return smoke_trial_tasks(folder, count, threads=threads, proxy=proxy)

    with tempfile.TemporaryDirectory(prefix="fbnas-bench-ddp-") as tmp:
        # untimed: one trial first, so the data, imports and allocator are warm for both sequential variants
        SequentialExecutor(threads=1).map(run_trial, tasks_in(Path(tmp) / "warmup", 1, 1))
        tasks = tasks_in(Path(tmp) / "seq", n, 2)
        with SequentialExecutor(threads=2) as ex:
            t0 = time.perf_counter()
            ex.map(run_trial, tasks)
            out["sequential_2_threads_s"] = time.perf_counter() - t0
        tasks = tasks_in(Path(tmp) / "seq1", n, 1)
        with SequentialExecutor(threads=1) as ex:  # context: the same trials on 1 thread
            t0 = time.perf_counter()
            ex.map(run_trial, tasks)
            out["sequential_1_thread_s"] = time.perf_counter() - t0
        tasks = tasks_in(Path(tmp) / "ray", n, 1)
        ex_ray = RayExecutor(workers=2, threads=1, address="local")
        try:
            t0 = time.perf_counter()
            ex_ray._ray()
            # untimed: one trial per worker, so both workers have imported fbnas and loaded the data (a long
            # search pays that once)
            ex_ray.map(run_trial, smoke_trial_tasks(Path(tmp) / "ray_warmup", 2, threads=1,
                                                    proxy={**proxy, "train_images": 96, "epochs": 2}))
            out["ray_init_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            ex_ray.map(run_trial, tasks)
            out["ray_2_workers_x_1_thread_s"] = time.perf_counter() - t0
        finally:
            ex_ray.close()
    out["sequential_trials_per_hour"] = n / out["sequential_2_threads_s"] * 3600
    out["ray_trials_per_hour"] = n / out["ray_2_workers_x_1_thread_s"] * 3600
    out["ray_over_sequential"] = out["ray_trials_per_hour"] / out["sequential_trials_per_hour"]
    out["sequential_2_threads_over_1"] = out["sequential_1_thread_s"] / out["sequential_2_threads_s"]
    return out


def run(args) -> dict:
    import platform

    import torch

    load = os.getloadavg()
    base = {"space": args.space, "input_size": args.input_size, "width": args.width, "mode": args.mode,
            "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup}
    single = run_worker("ddp", {**base, "world": 1, "threads": 2}, "ddp (1 process x 2 threads)")
    ddp = run_worker("ddp", {**base, "world": 2, "threads": 1}, "ddp (2 ranks x 1 thread)")
    one = run_worker("ddp", {**base, "world": 1, "threads": 1}, "ddp (1 process x 1 thread)")
    result: dict[str, Any] = {
        "bench": "ddp", "torch": torch.__version__, "cpus": os.cpu_count(), "machine": platform.machine(),
        "load_average_at_start": [round(x, 2) for x in load],  # a shared machine: other work competes
        "supernet": {**base, "one_process_2_threads_images_per_s": single["images_per_s"],
                     "two_ranks_1_thread_images_per_s": ddp["images_per_s"],
                     "ddp_over_one_process": ddp["images_per_s"] / single["images_per_s"],
                     # context: how 2 threads scale over 1 here (below 1: intra-op threads lose on this machine)
                     "one_process_1_thread_images_per_s": one["images_per_s"],
                     "two_threads_over_one": single["images_per_s"] / one["images_per_s"]},
    }
    if not args.skip_jointnas:
        result["jointnas"] = _trials({"trials": args.trials, "trial_images": args.trial_images,
                                      "trial_epochs": args.trial_epochs})
    return json.loads(json.dumps(result))


register_bench("ddp", "data-parallel supernet steps (2 ranks vs 2 threads) and Ray JointNAS trials per hour", _add_args,
               run)
