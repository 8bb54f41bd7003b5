"""``fbnas bench supernet``: training-step time and peak memory of the DNAS supernet vs. a child network.

Three variants, each in a fresh subprocess (so peak RSS is its own): the supernet in ``hard`` mode
(straight-through, only the sampled candidate runs), in ``soft`` mode (all candidates run, the paper) and
the child network sampled from the same space, built as a plain :class:`FBNetModel`. A step is forward +
cross-entropy + backward + SGD step on the same batch (the weight step of the search). In hard mode theta is
set so the sampled architecture is the child, which makes ``hard_over_child`` the pure overhead of the
supernet machinery (Gumbel sampling, straight-through weights, dispatch).
"""

from __future__ import annotations

import statistics
import time

from fbnas.bench import register_bench, run_worker

VARIANTS = ("child", "hard", "soft")


def _add_args(p) -> None:
    p.add_argument("--space", default="fbnet_v1", help="search space name or YAML")
    p.add_argument("--input-size", type=int, default=28)
    p.add_argument("--in-channels", type=int, default=1)
    p.add_argument("--width", type=float, default=None, help="width multiplier of the space")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=10, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0, help="picks the child architecture")
    p.add_argument("--no-channels-last", action="store_true")


def _worker(opts: dict) -> dict:
    """Time ``opts['variant']`` in this process; returns step times (ms) and peak RSS (MiB)."""
    import resource

    from fbnas.runtime import tune_allocator

    tune_allocator()
    import numpy as np
    import torch
    import torch.nn.functional as F

    from fbnas.nn.model import FBNetModel
    from fbnas.search.supernet import Supernet
    from fbnas.seeding import step_generator
    from fbnas.space import load_space

    torch.set_num_threads(int(opts["threads"]))
    torch.manual_seed(opts["seed"])
    space = load_space(opts["space"], input_size=opts["input_size"], in_channels=opts["in_channels"],
                       width_multiplier=opts["width"])
    rng = np.random.default_rng(opts["seed"])  # the child every variant runs (the same draw since the bench began)
    choices = [int(rng.integers(n)) for n in space.num_choices()]
    x = torch.randn(opts["batch_size"], opts["in_channels"], opts["input_size"], opts["input_size"])
    y = torch.randint(0, 10, (opts["batch_size"],))
    cl = not opts["no_channels_last"]
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    variant = opts["variant"]
    if variant == "child":
        model = FBNetModel(space.to_spec(choices), 10)
        params = list(model.parameters())

        def forward(step: int):
            return model(x)
    else:
        model = Supernet(space, 10, mode=variant)
        with torch.no_grad():  # the sampled architecture is the child at every step
            for theta, c in zip(model.arch_parameters(), choices, strict=True):
                theta.fill_(-1e3)
                theta[c] = 1e3
        params = model.weight_parameters()

        def forward(step: int):
            with torch.no_grad():
                sample = model.arch_weights(1.0, step_generator(opts["seed"], step))
            return model(x, sample)
    if cl:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4)
    times = []
    for step in range(opts["warmup"] + opts["steps"]):
        t0 = time.perf_counter()
        loss = F.cross_entropy(forward(step), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        if step >= opts["warmup"]:
            times.append(dt * 1000.0)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"step_ms": times, "median_step_ms": statistics.median(times), "peak_rss_mb": rss1 / 1024.0,
            "peak_rss_delta_mb": (rss1 - rss0) / 1024.0, "choices": space.choice_names(choices),
            "num_params": sum(p.numel() for p in model.parameters())}


def _run_variant(opts: dict) -> dict:
    return run_worker("supernet", opts, f"supernet variant {opts['variant']}")


def run(args) -> dict:
    base = {"space": args.space, "input_size": args.input_size, "in_channels": args.in_channels,
            "width": args.width, "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup,
            "threads": args.threads, "seed": args.seed, "no_channels_last": args.no_channels_last}
    res = {v: _run_variant({**base, "variant": v}) for v in VARIANTS}
    child = res["child"]["median_step_ms"]
    out: dict = {
        "hard_over_child": round(res["hard"]["median_step_ms"] / child, 4),
        "soft_over_child": round(res["soft"]["median_step_ms"] / child, 4),
    }
    for v in VARIANTS:
        out[f"{v}_step_ms"] = round(res[v]["median_step_ms"], 3)
        out[f"{v}_peak_rss_mb"] = round(res[v]["peak_rss_mb"], 1)
        out[f"{v}_peak_rss_delta_mb"] = round(res[v]["peak_rss_delta_mb"], 1)
        out[f"{v}_params"] = res[v]["num_params"]
    out["child_arch"] = res["child"]["choices"]
    out["settings"] = base
    return out


register_bench("supernet", "DNAS supernet step time (hard / soft) vs. a child network", _add_args, run)
