"""FBNetV3's neural acquisition function (seed 000, "FBNet V3"): a small MLP with an architecture encoder and
two heads.

* The **encoder** maps the architecture part of a joint sample's encoding (one-hot choices, scaled ranges:
  ``space.encode``) to an embedding.
* The **proxy head** predicts the architecture's MACs and params from the embedding. It pretrains the encoder
  on many free samples: their counts are analytic (``fbnas.cost.counting.count``), no training needed. The
  embedding is then scaled back to its RMS at initialisation (``rescale_embedding``), the function unchanged.
* The **accuracy head** predicts the proxy accuracy from the embedding and the recipe's encoding.

Accuracy training follows the seed: a Huber loss (robust to the odd diverged candidate); first the encoder
frozen and only the accuracy head trained (``freeze_epochs``, 50), then everything end to end with a
decaying learning rate (``finetune_epochs``, 50). Targets are standardised (``huber_delta`` is in standard
deviations). Everything is deterministic from the seed: initialisation and batch order come from keyed
generators, training runs on the CPU with one thread. ``ensemble`` members from different initialisations are
averaged. The state saves with ``torch.save`` and loads with ``weights_only=True``.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fbnas.errors import FbnasError
from fbnas.seeding import derive_seed, make_generator
from fbnas.space import JointSpace, Sample

SCHEMA = "fbnas.jointnas.predictor/1"


def mlp(sizes: Sequence[int], last_act: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or last_act:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class PredictorNet(nn.Module):
    """Encoder (architecture encoding -> embedding), proxy head (-> MACs, params), accuracy head."""

    def __init__(self, arch_size: int, recipe_size: int, encoder: Sequence[int], head: Sequence[int],
                 proxy_outputs: int = 2) -> None:
        super().__init__()
        self.encoder = mlp([arch_size, *encoder], last_act=True)
        self.proxy_head = nn.Linear(encoder[-1], proxy_outputs)  # log MACs, log params first
        self.acc_head = mlp([encoder[-1] + recipe_size, *head, 1], last_act=False)

    def embed(self, xa: torch.Tensor) -> torch.Tensor:
        return self.encoder(xa)

    def proxy(self, xa: torch.Tensor) -> torch.Tensor:
        return self.proxy_head(self.embed(xa))

    def forward(self, xa: torch.Tensor, xr: torch.Tensor) -> torch.Tensor:
        return self.acc_head(torch.cat([self.embed(xa), xr], dim=1)).squeeze(1)


@contextlib.contextmanager
def deterministic(seed_key: tuple) -> Iterator[None]:
    """One thread and a keyed global torch seed (module initialisation), the caller's state restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(*seed_key))
            yield
    finally:
        torch.set_num_threads(threads)


def encode(space: JointSpace, samples: Sequence[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
    """(architecture encodings, recipe encodings) of joint samples, float32 ``[N, .]``."""
    arch_part, recipe_part = space.parts["arch"], space.parts["recipe"]
    xa, xr = [], []
    for s in samples:
        parts = space.split(s)
        xa.append(arch_part.encode(parts["arch"]))
        xr.append(recipe_part.encode(parts["recipe"]))
    return (torch.tensor(xa, dtype=torch.float32).reshape(len(samples), arch_part.encoding_size),
            torch.tensor(xr, dtype=torch.float32).reshape(len(samples), recipe_part.encoding_size))


def _batches(n: int, batch_size: int, key: tuple) -> list[torch.Tensor]:
    perm = torch.randperm(n, generator=make_generator(*key))
    return [perm[i:i + batch_size] for i in range(0, n, batch_size)]


@dataclass
class FitLog:
    """Loss per epoch of each phase (what the tests and the plots read)."""

    pretrain: list[float] = field(default_factory=list)
    freeze: list[float] = field(default_factory=list)
    finetune: list[float] = field(default_factory=list)


def pretrain_encoder(net: PredictorNet, xa: torch.Tensor, targets: torch.Tensor, cfg: Any, key: tuple,
                     log: FitLog | None = None) -> None:
    """The proxy head and the encoder on standardised (log MACs, log params) of free samples (Huber)."""
    opt = torch.optim.AdamW(list(net.encoder.parameters()) + list(net.proxy_head.parameters()), lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    steps = cfg.pretrain_epochs * math.ceil(len(xa) / 64)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    for epoch in range(cfg.pretrain_epochs):
        total = 0.0
        for idx in _batches(len(xa), 64, (*key, "pretrain", epoch)):
            loss = huber_loss(net.proxy(xa[idx]), targets[idx], cfg.huber_delta)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        if log is not None:
            log.pretrain.append(total / len(xa))


def huber_loss(pred: torch.Tensor, target: torch.Tensor, delta: float) -> torch.Tensor:
    """The Huber loss of seed 000: quadratic within ``delta`` of the target, linear beyond (outliers pull less)."""
    return F.huber_loss(pred, target, delta=delta)


def _epoch(net: PredictorNet, opt: torch.optim.Optimizer, sched: Any, xa: torch.Tensor, xr: torch.Tensor,
           y: torch.Tensor, cfg: Any, key: tuple) -> float:
    total = 0.0
    for idx in _batches(len(y), cfg.batch_size, key):
        loss = huber_loss(net(xa[idx], xr[idx]), y[idx], cfg.huber_delta)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        total += float(loss.detach()) * len(idx)
    return total / len(y)


def train_frozen(net: PredictorNet, xa: torch.Tensor, xr: torch.Tensor, y: torch.Tensor, cfg: Any, key: tuple,
                 log: FitLog | None = None) -> None:
    """Phase 1: ``freeze_epochs`` of the accuracy head alone; the encoder does not change."""
    for p in net.encoder.parameters():
        p.requires_grad_(False)
    try:
        opt = torch.optim.AdamW(net.acc_head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        for epoch in range(cfg.freeze_epochs):
            loss = _epoch(net, opt, None, xa, xr, y, cfg, (*key, "freeze", epoch))
            if log is not None:
                log.freeze.append(loss)
    finally:
        for p in net.encoder.parameters():
            p.requires_grad_(True)


def train_end_to_end(net: PredictorNet, xa: torch.Tensor, xr: torch.Tensor, y: torch.Tensor, cfg: Any, key: tuple,
                     log: FitLog | None = None) -> None:
    """Phase 2: ``finetune_epochs`` of encoder and accuracy head together, the lr decaying (cosine) to 0."""
    params = list(net.encoder.parameters()) + list(net.acc_head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = max(1, cfg.finetune_epochs * math.ceil(len(y) / cfg.batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    for epoch in range(cfg.finetune_epochs):
        loss = _epoch(net, opt, sched, xa, xr, y, cfg, (*key, "finetune", epoch))
        if log is not None:
            log.finetune.append(loss)


def fit_accuracy(net: PredictorNet, xa: torch.Tensor, xr: torch.Tensor, y: torch.Tensor, cfg: Any, key: tuple,
                 log: FitLog | None = None) -> None:
    """Seed 000's schedule on standardised accuracies: the frozen phase, then the end-to-end phase."""
    train_frozen(net, xa, xr, y, cfg, key, log)
    train_end_to_end(net, xa, xr, y, cfg, key, log)


@dataclass
class Pretrained:
    """The ensemble's encoders after proxy pretraining (or at their random initialisation)."""

    members: list[dict[str, torch.Tensor]]
    proxy_mean: list[float]  # of every proxy target; the first two are log MACs and log params
    proxy_std: list[float]
    pretrained: bool
    log: list[list[float]]


@torch.no_grad()
def embedding_rms(net: PredictorNet, xa: torch.Tensor) -> float:
    """Root mean square of the embedding over the architectures ``xa``."""
    return float(net.embed(xa).pow(2).mean().sqrt())


@torch.no_grad()
def rescale_embedding(net: PredictorNet, factor: float) -> None:
    """Multiply the embedding by ``factor`` > 0 and leave the proxy head's outputs as they were: the encoder's
    last linear layer is scaled (ReLU is positively homogeneous) and the proxy head's weights divided.

    Pretraining grows the embedding. The accuracy head reads it beside the recipe's encoding, so a larger
    embedding weighs the architecture more against the recipe before the head has learned anything; scaled
    back, the frozen phase starts from the balance a random initialisation gives, and pretraining changes what
    the embedding encodes, not how loud it is."""
    if not factor > 0 or not math.isfinite(factor):
        raise FbnasError(f"predictor: embedding scale factor must be positive and finite, got {factor}")
    last = [m for m in net.encoder if isinstance(m, nn.Linear)][-1]
    last.weight.mul_(factor)
    last.bias.mul_(factor)
    net.proxy_head.weight.div_(factor)


STAGE_FLOOR = 1e-3  # millions: below a thousand MACs / params a stage's log cost is clipped (a stage of skips)


def proxy_targets(costs: Sequence[dict[str, Any]], kind: str = "total") -> np.ndarray:
    """The proxy head's targets: log MACs and log params of the network (``total``), followed for ``stages``
    by the log MACs and log params of every stage (``count().per_stage()``: stem, stages, classifier)."""
    rows = []
    for c in costs:
        row = [max(c["macs"], 1e-9), max(c["params"], 1e-9)]
        if kind == "stages":
            row += [max(v, STAGE_FLOOR) for v in (*c["stage_macs"], *c["stage_params"])]
        rows.append(row)
    if len({len(r) for r in rows}) > 1:
        raise FbnasError("predictor: the architectures have different numbers of stages; pretrain_targets: stages "
                         "needs a fixed stage count")
    return np.log(np.array(rows, dtype=np.float64))


def pretrain(space: JointSpace, cfg: Any, seed: int, arch_costs) -> Pretrained:
    """``cfg.ensemble`` networks initialised from (seed, member); with ``cfg.pretrain`` their encoders trained on
    ``cfg.pretrain_samples`` Sobol architectures of the space, whose MACs / params ``arch_costs(sample)`` gives."""
    arch_part, recipe_part = space.parts["arch"], space.parts["recipe"]
    members, logs = [], []
    samples = arch_part.sobol(cfg.pretrain_samples, seed=derive_seed(seed, "jointnas", "pretrain") % (2**32))
    # the random initialisation has the same network (the proxy head's size too), so an ablation compares inits
    outputs = proxy_targets([arch_costs(samples[0])], cfg.pretrain_targets).shape[1]
    mean, std = [0.0] * outputs, [1.0] * outputs
    if cfg.pretrain:
        t = proxy_targets([arch_costs(s) for s in samples], cfg.pretrain_targets)
        mean, std = t.mean(0).tolist(), (t.std(0) + 1e-9).tolist()
        xa = torch.tensor([arch_part.encode(s) for s in samples], dtype=torch.float32)
        targets = torch.tensor((t - np.array(mean)) / np.array(std), dtype=torch.float32)
    for m in range(cfg.ensemble):
        key = (seed, "jointnas", "predictor", m)
        log = FitLog()
        with deterministic(key):
            net = PredictorNet(arch_part.encoding_size, recipe_part.encoding_size, cfg.encoder, cfg.head, outputs)
            if cfg.pretrain:
                init_rms = embedding_rms(net, xa) if cfg.rescale_embedding else 0.0
                pretrain_encoder(net, xa, targets, cfg, key, log)
                if cfg.rescale_embedding and (after := embedding_rms(net, xa)) > 0:  # all zero: no scale to restore
                    rescale_embedding(net, init_rms / after)
        members.append(copy.deepcopy(net.state_dict()))
        logs.append(log.pretrain)
    return Pretrained(members, mean, std, bool(cfg.pretrain), logs)


class AccuracyPredictor:
    """The fitted ensemble: predicts proxy accuracy (and MACs / params) of joint samples."""

    def __init__(self, space: JointSpace, cfg: Any, members: list[PredictorNet], y_mean: float, y_std: float,
                 proxy_mean: list[float], proxy_std: list[float], pretrained: bool = True) -> None:
        self.space, self.cfg, self.members = space, cfg, members
        self.y_mean, self.y_std = float(y_mean), float(y_std)
        self.proxy_mean, self.proxy_std, self.pretrained = list(proxy_mean), list(proxy_std), pretrained

    @torch.no_grad()
    def predict_members(self, samples: Sequence[Sample], chunk: int = 4096) -> np.ndarray:
        """Every member's predicted proxy accuracy, ``[members, samples]``, in accuracy units."""
        if not samples:
            return np.zeros((len(self.members), 0))
        out = []
        with deterministic(("predict",)):
            for i in range(0, len(samples), chunk):
                xa, xr = encode(self.space, samples[i:i + chunk])
                z = torch.stack([m(xa, xr) for m in self.members])
                out.append(z.double().numpy() * self.y_std + self.y_mean)
        return np.concatenate(out, axis=1)

    def predict(self, samples: Sequence[Sample]) -> np.ndarray:
        """The members' mean predicted proxy accuracy."""
        return self.predict_members(samples).mean(0)

    def lower_bound(self, samples: Sequence[Sample], kappa: float) -> np.ndarray:
        """Mean minus ``kappa`` standard deviations of the members: where the members disagree (far from the
        trained candidates, where an MLP extrapolates) a prediction counts for less."""
        z = self.predict_members(samples)
        return z.mean(0) - kappa * (z.std(0) if len(z) > 1 else 0.0)

    @torch.no_grad()
    def predict_proxy(self, samples: Sequence[Sample]) -> np.ndarray:
        """Predicted (MACs, params) in millions (the proxy head; meaningful after pretraining)."""
        xa, _ = encode(self.space, samples)
        z = torch.stack([m.proxy(xa)[:, :2] for m in self.members]).mean(0).double().numpy()
        return np.exp(z * np.array(self.proxy_std[:2]) + np.array(self.proxy_mean[:2]))

    # ---- persistence ---------------------------------------------------------------------------
    def state(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        from fbnas.search.jointnas.spaces import space_signature

        arch_part, recipe_part = self.space.parts["arch"], self.space.parts["recipe"]
        return {"schema": SCHEMA, "arch_size": arch_part.encoding_size, "recipe_size": recipe_part.encoding_size,
                "encoder": list(self.cfg.encoder), "head": list(self.cfg.head),
                "members": [m.state_dict() for m in self.members], "y_mean": self.y_mean, "y_std": self.y_std,
                "proxy_mean": self.proxy_mean, "proxy_std": self.proxy_std, "pretrained": self.pretrained,
                "space": space_signature(self.space), **(extra or {})}

    def save(self, path, extra: dict[str, Any] | None = None) -> None:
        from fbnas.io import atomic_torch_save

        atomic_torch_save(path, self.state(extra))

    @classmethod
    def load(cls, path, space: JointSpace, cfg: Any) -> AccuracyPredictor:
        """A saved predictor for ``space`` (the same dimensions and options as when it was fitted)."""
        from fbnas.runs import load_checkpoint_file
        from fbnas.search.jointnas.spaces import space_signature

        state = load_checkpoint_file(path)
        if state.get("schema") != SCHEMA:
            raise FbnasError(f"{path}: not a JointNAS predictor (schema {state.get('schema')!r})")
        if state["space"] != space_signature(space):
            raise FbnasError(f"{path}: the predictor was fitted on another space than jointnas.space describes; "
                             "reuse needs the same architecture and recipe dimensions")
        members = []
        for sd in state["members"]:
            net = PredictorNet(int(state["arch_size"]), int(state["recipe_size"]), state["encoder"], state["head"],
                               len(state["proxy_mean"]))
            net.load_state_dict(sd)
            members.append(net.eval())
        return cls(space, cfg, members, state["y_mean"], state["y_std"], state["proxy_mean"], state["proxy_std"],
                   bool(state.get("pretrained", True)))


def fit_predictor(space: JointSpace, samples: Sequence[Sample], accs: Sequence[float], cfg: Any, seed: int,
                  pre: Pretrained, tag: str | int = "fit", logs: list[FitLog] | None = None) -> AccuracyPredictor:
    """Each member from its pretrained state, fitted on (samples, accuracies) with the freeze schedule."""
    if len(samples) < 2:
        raise FbnasError(f"predictor: needs at least 2 trained candidates, got {len(samples)}")
    y = np.asarray(accs, dtype=np.float64)
    mean, std = float(y.mean()), float(y.std()) or 1.0
    xa, xr = encode(space, samples)
    yt = torch.tensor((y - mean) / std, dtype=torch.float32)
    arch_part, recipe_part = space.parts["arch"], space.parts["recipe"]
    members = []
    for m, sd in enumerate(pre.members):
        key = (seed, "jointnas", "predictor", m, tag)
        log = FitLog()
        idx = torch.arange(len(y))
        if cfg.bootstrap and len(pre.members) > 1:  # bagging: each member sees its own resample of the trials
            idx = torch.randint(len(y), (len(y),), generator=make_generator(*key, "bootstrap"))
        with deterministic(key):
            net = PredictorNet(arch_part.encoding_size, recipe_part.encoding_size, cfg.encoder, cfg.head,
                               len(pre.proxy_mean))
            net.load_state_dict(sd)
            fit_accuracy(net, xa[idx], xr[idx], yt[idx], cfg, key, log)
        members.append(net.eval())
        if logs is not None:
            logs.append(log)
    return AccuracyPredictor(space, cfg, members, mean, std, pre.proxy_mean, pre.proxy_std, pre.pretrained)


def rank_metrics(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """Spearman's rho and Kendall's tau between predictions and measurements."""
    from scipy.stats import kendalltau, spearmanr

    if len(predicted) < 3:
        return {"spearman": float("nan"), "kendall": float("nan"), "n": len(predicted)}
    rho = spearmanr(predicted, measured).statistic
    tau = kendalltau(predicted, measured).statistic
    return {"spearman": float(rho), "kendall": float(tau), "n": len(predicted)}
