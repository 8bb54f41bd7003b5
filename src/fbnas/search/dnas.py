"""FBNetV1 DNAS search (arXiv 1812.03443): ``fbnas search dnas --config FILE --out DIR``.

Schedule (all configurable, defaults from the paper): the training set is split 80/20; the supernet's
weights train on the 80% with SGD (momentum 0.9, cosine), theta on the 20% with Adam (lr 0.01, wd 5e-4).
The first ``warmup_epochs`` train only the weights; after that each epoch trains the weights, then theta.
The Gumbel temperature is ``tau0 * exp(-tau_decay * e)`` with ``e`` counted from the first theta epoch.

Every epoch writes an atomic checkpoint (model, optimizers, scheduler, RNG states, history); ``--resume``
continues bit-exactly on CPU. Gumbel noise comes from :func:`fbnas.search.gumbel.step_generator` keyed by
(seed, step, stream), so samples never depend on the global RNG or on where a run was resumed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fbnas.errors import FbnasError
from fbnas.search import register_strategy
from fbnas.search.alternating import (
    STREAM_SAMPLES,
    CommonSettings,
    check_loaders,
    common_settings,
    run_alternating,
    start_run,
)
from fbnas.search.gumbel import step_generator
from fbnas.search.loss import COST_KINDS, CostModel, analytic_cost_model
from fbnas.search.run import (
    ConfigView,
    RunFolder,
    choices_probability,
    describe_arch,
    distribution_summary,
    load_config,
    sample_choices,
)
from fbnas.search.supernet import MODES, NOISE, Supernet

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "threads": None,  # torch threads (None: leave torch's default)
    "space": {"name": "fbnet_v1", "input_size": 28, "in_channels": 1, "width_multiplier": None, "strides": None},
    "data": {"name": "fashion-mnist", "dir": None, "subset": None, "theta_split": 0.2, "batch_size": 128,
             "augment": False, "channels_last": True},
    "supernet": {"mode": "soft", "noise": "batch"},
    "schedule": {"epochs": 90, "warmup_epochs": 10, "tau0": 5.0, "tau_decay": 0.045},
    "weights_optimizer": {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "nesterov": False,
                          "min_lr": 0.0},
    "theta_optimizer": {"lr": 0.01, "weight_decay": 5e-4},
    "loss": {"form": "paper", "alpha": 0.2, "beta": 0.6, "cost": "latency", "target": None, "lambda": 1.0,
             "penalty": "hinge", "cost_scale": 1.0, "weight_loss": "ce"},
    "lut": {"path": None, "backend": "torch", "threads": 1, "build": True},
    "result": {"samples": 6},
}


@dataclass
class SearchSettings(CommonSettings):
    """The validated config, typed; built by :func:`settings_from_config`."""

    space_name: str
    input_size: int
    in_channels: int
    width_multiplier: float | None
    strides: list[int] | None
    mode: str
    noise: str
    lut_path: str | None
    lut_backend: str
    lut_threads: int
    lut_build: bool


def settings_from_config(cfg: dict, source: str = "config") -> SearchSettings:
    v = ConfigView(cfg, source)
    s = SearchSettings(
        **common_settings(v, source, COST_KINDS),
        space_name=v.str("space.name"), input_size=v.int("space.input_size", 8),
        in_channels=v.int("space.in_channels", 1),
        width_multiplier=v.float("space.width_multiplier", 0.0, optional=True, strict_min=True),
        strides=v.int_list("space.strides", optional=True),
        mode=v.str("supernet.mode", MODES), noise=v.str("supernet.noise", NOISE),
        lut_path=v.str("lut.path", optional=True), lut_backend=v.str("lut.backend"),
        lut_threads=v.int("lut.threads", 1), lut_build=v.bool("lut.build"),
    )
    if s.cost_kind == "latency" and not s.lut_path:
        raise v.fail("lut.path", "loss.cost 'latency' needs a latency table path (or use loss.cost macs/params)")
    return s


# ---- data -----------------------------------------------------------------------------------------


class _TensorBatches:
    """Seeded, epoch-keyed minibatches over in-memory normalized tensors (the ``synthetic`` dataset)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int,
                 channels_last: bool) -> None:
        self.images, self.labels, self.batch_size, self.seed = images, labels, batch_size, seed
        self.channels_last = channels_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.labels) // self.batch_size

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 7_919 + self.epoch)
        order = torch.randperm(len(self.labels), generator=g)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.images.index_select(0, idx)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels.index_select(0, idx)


def synthetic_data(n: int, in_channels: int, size: int, num_classes: int = 10, seed: int = 0):
    """Learnable random images: each class adds its own fixed pattern to Gaussian noise (tests, dev)."""
    g = torch.Generator().manual_seed(seed)
    patterns = torch.randn(num_classes, in_channels, size, size, generator=g)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    images = torch.randn(n, in_channels, size, size, generator=g) + 1.5 * patterns[labels]
    return images, labels, num_classes


def make_loaders(s: SearchSettings):
    """(weight-split loader, theta-split loader, num_classes), both deterministic in (seed, epoch)."""
    if s.data_name == "synthetic":
        n = s.subset or 512
        images, labels, num_classes = synthetic_data(n, s.in_channels, s.input_size, seed=s.seed)
        g = torch.Generator().manual_seed(s.seed)
        perm = torch.randperm(n, generator=g)
        n_theta = max(s.batch_size, int(round(n * s.theta_split)))
        t_idx, w_idx = perm[:n_theta], perm[n_theta:]
        wl = _TensorBatches(images[w_idx], labels[w_idx], s.batch_size, s.seed, s.channels_last)
        tl = _TensorBatches(images[t_idx], labels[t_idx], s.batch_size, s.seed + 1, s.channels_last)
        return wl, tl, num_classes
    try:
        from fbnas.data import BatchLoader, load_dataset, split_indices
    except ImportError:
        raise FbnasError("data.name: real datasets need fbnas.data (not installed in this tree); "
                         "use data.name: synthetic") from None
    data = load_dataset(s.data_name, data_dir=s.data_dir, train=True)
    if data.images.shape[1] != s.in_channels or data.images.shape[-1] != s.input_size:
        raise FbnasError(f"space.in_channels/space.input_size: the dataset {s.data_name!r} has images of "
                         f"{tuple(data.images.shape[1:])}, the space expects {s.in_channels}x{s.input_size}x"
                         f"{s.input_size}")
    n = len(data.labels)
    if s.subset is not None and s.subset < n:
        g = torch.Generator().manual_seed(s.seed)
        subset = torch.randperm(n, generator=g)[: s.subset]
    else:
        subset = torch.arange(n)
    w_pos, t_pos = split_indices(len(subset), s.theta_split, s.seed)
    w_idx = subset[torch.as_tensor(w_pos, dtype=torch.long)]
    t_idx = subset[torch.as_tensor(t_pos, dtype=torch.long)]
    augment = None
    if s.augment:
        from fbnas.data import AugmentConfig

        augment = AugmentConfig()
    wl = BatchLoader(data, indices=w_idx, batch_size=s.batch_size, shuffle=True, augment=augment, seed=s.seed,
                     channels_last=s.channels_last, drop_last=True)
    tl = BatchLoader(data, indices=t_idx, batch_size=s.batch_size, shuffle=True, augment=None, seed=s.seed + 1,
                     channels_last=s.channels_last, drop_last=True)
    return wl, tl, int(data.num_classes)


# ---- cost -----------------------------------------------------------------------------------------


def load_latency_table(s: SearchSettings, space, num_classes: int):
    """The LUT for ``space`` (missing entries measured first when ``lut.build``), or None without a path."""
    if not s.lut_path:
        return None
    try:
        from fbnas.lut import LatencyTable, build_table
    except ImportError:
        raise FbnasError("lut.path: latency tables need fbnas.lut (not in this tree); "
                         "set loss.cost to macs or params and lut.path to null") from None
    path = Path(s.lut_path)
    if s.lut_build:
        stats = build_table(path, space=space, input_size=s.input_size, backend=s.lut_backend,
                            threads=s.lut_threads, in_channels=s.in_channels, num_classes=num_classes,
                            progress=sys.stderr.isatty())
        if stats.get("measured"):
            print(f"latency table {path}: measured {stats['measured']} new entries", file=sys.stderr)
    elif not path.exists():
        raise FbnasError(f"lut.path: {path} not found (set lut.build: true to measure it)")
    return LatencyTable(path, backend=s.lut_backend, threads=s.lut_threads, num_classes=num_classes)


def make_cost_model(s: SearchSettings, space, num_classes: int, lut) -> CostModel:
    if s.cost_kind == "latency":
        matrix = lut.layer_matrix(space)
        return CostModel.from_matrix("latency", matrix, float(lut.fixed_ms(space)), space.num_choices())
    return analytic_cost_model(space, s.cost_kind, num_classes)


# ---- the search -----------------------------------------------------------------------------------


def run_search(cfg: dict, out: str | Path, resume: bool = False, log=print, source: str = "config",
               stop_after_epoch: int | None = None) -> dict:
    """Run (or resume) a DNAS search with the resolved ``cfg``; returns the result.json document.

    ``stop_after_epoch`` ends the process' work after that epoch's checkpoint (tests of resume).
    """
    from fbnas.space.space import load_space

    s = settings_from_config(cfg, source)
    folder, resuming = start_run(cfg, out, resume, s)
    space = load_space(s.space_name, input_size=s.input_size, in_channels=s.in_channels,
                       width_multiplier=s.width_multiplier, strides=s.strides)
    w_loader, t_loader, num_classes = make_loaders(s)
    check_loaders(w_loader, t_loader, s, source)
    lut = load_latency_table(s, space, num_classes)
    cost_model = make_cost_model(s, space, num_classes, lut)
    s.loss.check_cost_range(cost_model.min_max()[0], f"{source}: loss")
    net = Supernet(space, num_classes, mode=s.mode, noise=s.noise)
    if s.channels_last:
        net = net.to(memory_format=torch.channels_last)
    layer_names = [f"L{li}:s{layer.stage}" for li, layer in enumerate(space.layers)]
    cand_names = [[c.name for c in layer.candidates] for layer in space.layers]
    history = run_alternating(net, w_loader, t_loader, cost_model, s, folder, cfg, resuming, layer_names, cand_names,
                              log, stop_after_epoch)
    if history is None:
        return {}

    result = build_result(net, space, s, cost_model, lut, num_classes, history)
    folder.write_result(result)
    return result


def build_result(net: Supernet, space, s: SearchSettings, cost_model: CostModel, lut, num_classes: int,
                 history: list[dict]) -> dict:
    """result.json: argmax arch (top-level ``arch``) and ``samples`` drawn from P_theta (eq. 6)."""
    probs = net.probabilities()
    latency_fn = (lambda spec: lut.predict(spec).total_ms) if lut is not None else None
    choices = net.argmax_choices()
    best = describe_arch(space, choices, num_classes, "dnas_argmax", latency_fn)
    best["probability"] = choices_probability(probs, choices)
    best["cost"] = cost_model.of_choices(choices)
    gen = step_generator(s.seed, 0, STREAM_SAMPLES)
    samples = []
    for k, ch in enumerate(sample_choices(probs, s.num_samples, gen)):
        entry = describe_arch(space, ch, num_classes, f"dnas_sample{k}", latency_fn)
        entry["probability"] = choices_probability(probs, ch)
        entry["cost"] = cost_model.of_choices(ch)
        samples.append(entry)
    return {
        "strategy": "dnas",
        "arch": best["arch"],
        "choices": best["choices"],
        "choice_names": best["choice_names"],
        "latency_ms": best["latency_ms"],
        "macs": best["macs"],
        "params": best["params"],
        "probability": best["probability"],
        "cost": {"kind": cost_model.kind, "unit": cost_model.unit, "value": best["cost"]},
        "num_classes": num_classes,
        "samples": samples,
        "probs": [p.tolist() for p in probs],
        "distribution": distribution_summary(probs),
        "epochs": len(history),
        "final": {k: v for k, v in history[-1].items() if k != "elapsed_s"} if history else {},
        "timing": {"search_seconds": history[-1]["elapsed_s"] if history else 0.0},
    }


def format_result(result: dict) -> str:
    """The found architecture as printed at the end of a search."""
    lines = ["found architecture (argmax of P_theta), choice per searchable layer:"]
    dist = result.get("distribution")
    for li, name in enumerate(result["choice_names"]):
        p_s = ""
        if dist is not None:
            p_s = f"  (p {dist['max_prob'][li]:.2f}, uniform {1 / len(result['probs'][li]):.2f})"
        lines.append(f"  layer {li:2d}: {name}{p_s}")
    lat = result.get("latency_ms")
    lat_s = f"{lat:.3f} ms (LUT)" if lat is not None else "n/a (no LUT configured)"
    lines.append(f"predicted latency: {lat_s}")
    lines.append(f"MACs: {result['macs'] / 1e6:.3f} M   params: {result['params'] / 1e6:.3f} M")
    lines.append(f"search cost ({result['cost']['kind']}): {result['cost']['value']:.3f} {result['cost']['unit']}")
    if dist is not None and dist["near_uniform"]:
        lines.append(f"note: P_theta is still close to uniform (mean entropy {dist['mean_normalized_entropy']:.3f} "
                     "of the maximum): the argmax is nearly a random pick at this cost; search longer or on more "
                     "data for a decided architecture")
    return "\n".join(lines)


# ---- CLI ------------------------------------------------------------------------------------------


def _add_args(p) -> None:
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set loss.form=none (repeatable)")


def _run_cli(args) -> int:
    cfg = load_config(args.config, DEFAULTS, args.preset, args.set)
    folder = RunFolder(args.out)
    if args.resume and folder.file(RunFolder.CHECKPOINT).exists():
        saved = folder.read_config()
        if saved is not None:
            cfg = saved  # the run's own resolved config wins
    result = run_search(cfg, args.out, resume=args.resume, log=lambda m: print(m, flush=True),
                        source=str(args.config))
    print(format_result(result))
    print(f"result: {folder.file(RunFolder.RESULT)}")
    return 0


register_strategy("dnas", "FBNetV1 DNAS: Gumbel-softmax supernet with a latency-aware loss", _add_args, _run_cli)
