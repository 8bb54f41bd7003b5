"""``fbnas bench fpnas``: step time and peak memory of an FP-NAS search step beside a training step of the child.

The child is the space's largest architecture (every dimension at its last option), trained alone as a plain
network (forward, cross-entropy, backward, SGD step). The search step is FP-NAS's on the single-path supernet
(:mod:`fbnas.search.single_path`): a weight step on K sampled children (importance-weighted, one child at a time)
plus an architecture step (K forwards and the alpha update), with P(A | alpha) put on the largest architecture so
that every sample is that child: the step's worst case, and the same network as the reference. Its time is also
given per sampled architecture. Peak memory as in ``fbnas bench dmasking``: the growth of the peak resident set
over the steps, in a fresh subprocess per configuration, with glibc keeping freed memory.
"""

from __future__ import annotations

import statistics
import time

from fbnas.bench import register_bench, run_worker

KS = (1, 2, 4, 8)


def _add_args(p) -> None:
    p.add_argument("--space", default="fbnetv2_fpp_fmnist", help="an FP-NAS space (shipped name or YAML)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--k", type=int, nargs="+", default=list(KS), help="sample counts K to measure")
    p.add_argument("--steps", type=int, default=3, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="K 1 and 2, batch 8, one step each (tests)")


def _worker(opts: dict) -> dict:
    import resource

    from fbnas.runtime import tune_allocator

    tune_allocator()
    import torch
    import torch.nn.functional as F

    from fbnas.bench.dmasking import _prime_runtime
    from fbnas.space import load_space

    torch.set_num_threads(int(opts["threads"]))
    torch.manual_seed(0)
    _prime_runtime()
    space = load_space(opts["space"])
    largest = [k - 1 for k in space.num_choices()]
    b = opts["batch_size"]
    x = torch.randn(b, space.in_channels, space.input_size, space.input_size)
    y = torch.randint(0, 10, (b,))
    xt, yt = torch.randn_like(x), torch.randint(0, 10, (b,))
    if opts["variant"] == "child":
        from fbnas.nn.model import FBNetModel

        model = FBNetModel(space.build(space.from_indices(largest)).arch, 10).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step() -> None:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    else:
        from fbnas.cost.terms import analytic_cost_model
        from fbnas.search.sampled_update import SampledUpdate
        from fbnas.search.single_path import SinglePathSupernet

        net = SinglePathSupernet(space, 10).train()
        with torch.no_grad():  # all of P(A | alpha) on the largest architecture
            for p, c in zip(net.dist.fd, largest, strict=True):
                p.zero_()
                p[c] = 60.0
        update = SampledUpdate(net, analytic_cost_model(space, "macs", 10), seed=0, lam=0.25, k_min=1, k_max=64,
                               fixed_k=int(opts["k"]), switch_epoch=None, beta=1.0, target=1.0,
                               weight_loss="importance", lr=0.01, weight_decay=0.0)
        opt = torch.optim.SGD(net.weight_parameters(), lr=0.01, momentum=0.9)
        state = {"step": 0}

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            update.weight_step(net, x, y, state["step"])
            opt.step()
            update.arch_step(net, xt, yt, state["step"])
            state["step"] += 1
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for i in range(opts["warmup"] + opts["steps"]):
        t0 = time.perf_counter()
        step()
        if i >= opts["warmup"]:
            times.append((time.perf_counter() - t0) * 1000.0)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"step_ms": statistics.median(times), "peak_mb": (rss1 - rss0) / 1024.0}


def run(args) -> dict:
    from fbnas.cost.counting import count
    from fbnas.space import load_space

    ks = [1, 2] if args.quick else list(args.k)
    base = {"space": args.space, "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup,
            "threads": args.threads}
    if args.quick:
        base.update(batch_size=8, steps=1, warmup=0)
    child = run_worker("fpnas", {**base, "variant": "child"}, "fpnas child")
    out: dict = {"k": ks, "child_step_ms": round(child["step_ms"], 2), "child_peak_mb": round(child["peak_mb"], 2),
                 "search_step_ms": [], "search_step_ms_per_arch": [], "search_peak_mb": [], "peak_ratio": []}
    for k in ks:
        r = run_worker("fpnas", {**base, "variant": "search", "k": k}, f"fpnas search K={k}")
        out["search_step_ms"].append(round(r["step_ms"], 2))
        out["search_step_ms_per_arch"].append(round(r["step_ms"] / k, 2))
        out["search_peak_mb"].append(round(r["peak_mb"], 2))
        out["peak_ratio"].append(round(r["peak_mb"] / child["peak_mb"], 3) if child["peak_mb"] > 0 else None)
    space = load_space(args.space)
    arch = space.build(space.from_indices([k - 1 for k in space.num_choices()])).arch
    out["child_macs"] = count(arch, num_classes=10).macs
    out["search_step"] = "weight step on K children (forward + backward each) + architecture step (K forwards)"
    out["memory_method"] = "peak RSS growth (ru_maxrss) over the steps, fresh subprocess per configuration"
    out["settings"] = base
    return out


register_bench("fpnas", "FP-NAS search step vs. a training step of the child: time (per sampled architecture) and "
               "peak memory", _add_args, run)
