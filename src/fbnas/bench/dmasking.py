"""``fbnas bench dmasking``: supernet step time and peak memory as channel options per layer grow.

Two supernets with the same channel options ``c_i = round(C * i / K)`` (i = 1..K) in each of ``layers``
searchable 3x3 conv layers:

* ``mask``: FBNetV2 channel masking: one conv at the largest width ``C``, output times ``M = sum_i g_i l_i``.
* ``naive``: DNAS branching: one conv per option, each output zero-padded to ``C`` channels, Gumbel-summed.

A step is forward + cross-entropy + backward + SGD step. Peak memory: every configuration runs in a fresh
subprocess and reports the growth of its peak resident set (``ru_maxrss`` after the steps minus before the
first step, taken once the model and batch exist and one tiny conv step has set up the libraries), with
glibc told to keep freed memory (``tune_allocator``) so the figure is the high-water mark of the steps
themselves, not of allocator churn. It works on CPU without a
profiler; it counts every byte the step touched (activations, gradients, temporaries).
"""

from __future__ import annotations

import statistics
import time

from fbnas.bench import register_bench, run_worker

OPTIONS = (2, 4, 8, 16, 32)
QUICK_OPTIONS = (2, 4)


def _add_args(p) -> None:
    p.add_argument("--channels", type=int, default=64, help="largest width C of every searchable layer")
    p.add_argument("--layers", type=int, default=3, help="searchable conv layers")
    p.add_argument("--input-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=2, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--options", type=int, nargs="+", default=None,
                   help=f"channel options per layer to measure (default {' '.join(map(str, OPTIONS))})")
    p.add_argument("--quick", action="store_true", help="options 2 and 4, one small step each (tests)")


def option_widths(channels: int, k: int) -> list[int]:
    """``k`` distinct widths up to ``channels``: ``round(channels * i / k)``, i = 1..k."""
    return sorted({max(1, round(channels * i / k)) for i in range(1, k + 1)})


def _build(variant: str, opts: dict):
    import torch
    from torch import nn

    from fbnas.nn.layers import ConvBNAct
    from fbnas.search.masking import apply_mask, channel_mask

    c, widths = opts["channels"], option_widths(opts["channels"], opts["options"])

    class MaskLayer(nn.Module):
        def __init__(self, cin: int) -> None:
            super().__init__()
            self.op = ConvBNAct(cin, c, 3)

        def forward(self, x, g):
            return apply_mask(self.op(x), channel_mask(g, widths, c))

    class NaiveLayer(nn.Module):
        def __init__(self, cin: int) -> None:
            super().__init__()
            self.ops = nn.ModuleList(ConvBNAct(cin, w, 3) for w in widths)

        def forward(self, x, g):
            out = None
            for i, op in enumerate(self.ops):
                y = op(x)
                if y.shape[1] < c:
                    y = torch.nn.functional.pad(y, (0, 0, 0, 0, 0, c - y.shape[1]))
                y = y * g[i]
                out = y if out is None else out + y
            return out

    cls = MaskLayer if variant == "mask" else NaiveLayer

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleList(cls(3 if i == 0 else c) for i in range(opts["layers"]))
            self.theta = nn.Parameter(torch.zeros(opts["layers"], len(widths)))
            self.fc = nn.Linear(c, 10)

        def forward(self, x):
            g = torch.softmax(self.theta, dim=-1)
            for i, layer in enumerate(self.layers):
                x = layer(x, g[i])
            return self.fc(x.mean(dim=(2, 3)))

    return Net(), len(widths)


def _prime_runtime() -> None:
    """One tiny conv training step first, so lazy library set-up is not counted as the step's memory."""
    import torch

    from fbnas.nn.layers import ConvBNAct

    m = ConvBNAct(3, 4, 3)
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    m(torch.randn(1, 3, 8, 8)).sum().backward()
    opt.step()


def _worker(opts: dict) -> dict:
    import resource

    from fbnas.runtime import tune_allocator

    tune_allocator()
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(int(opts["threads"]))
    torch.manual_seed(0)
    _prime_runtime()
    model, n_opts = _build(opts["variant"], opts)
    x = torch.randn(opts["batch_size"], 3, opts["input_size"], opts["input_size"])
    y = torch.randint(0, 10, (opts["batch_size"],))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for step in range(opts["warmup"] + opts["steps"]):
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step >= opts["warmup"]:
            times.append((time.perf_counter() - t0) * 1000.0)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"step_ms": statistics.median(times), "peak_mb": (rss1 - rss0) / 1024.0, "widths": n_opts}


def _run_one(opts: dict) -> dict:
    return run_worker("dmasking", opts, f"dmasking {opts['variant']} x{opts['options']}")


def run(args) -> dict:
    options = list(QUICK_OPTIONS if args.quick else (args.options or OPTIONS))
    base = {"channels": args.channels, "layers": args.layers, "input_size": args.input_size,
            "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup, "threads": args.threads}
    if args.quick:
        base.update(channels=16, layers=2, input_size=12, batch_size=4, steps=1, warmup=0)
    out: dict = {"options": options, "mask_peak_mb": [], "mask_step_ms": [], "naive_peak_mb": [],
                 "naive_step_ms": []}
    for k in options:
        for variant in ("mask", "naive"):
            r = _run_one({**base, "variant": variant, "options": k})
            out[f"{variant}_peak_mb"].append(round(r["peak_mb"], 2))
            out[f"{variant}_step_ms"].append(round(r["step_ms"], 2))
    first, last = out["mask_peak_mb"][0], out["mask_peak_mb"][-1]
    out["mask_peak_growth"] = round(last / first - 1.0, 4) if first > 0 else None
    nf, nl = out["naive_peak_mb"][0], out["naive_peak_mb"][-1]
    out["naive_peak_growth"] = round(nl / nf - 1.0, 4) if nf > 0 else None
    out["memory_method"] = "peak RSS growth (ru_maxrss) over the steps, fresh subprocess per configuration"
    out["settings"] = base
    return out


register_bench("dmasking", "DMaskingNAS channel masking vs. naive DNAS branching: step time and peak memory",
               _add_args, run)
