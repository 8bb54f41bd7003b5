"""What the differentiable strategies (DNAS, DMaskingNAS) share: their data splits, latency table, cost model
and Gumbel architecture update, built from a :class:`fbnas.search.config.SearchConfig`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fbnas.cost.terms import TermCostModel, analytic_cost_model
from fbnas.data.prepare import SearchData, search_loaders
from fbnas.distributed import world, writer_first
from fbnas.errors import FbnasError
from fbnas.search.config import SearchConfig
from fbnas.search.updates import GumbelUpdate


def load_latency_table(cfg: SearchConfig, space, num_classes: int, log: Callable[[str], Any] = print):
    """The LUT for ``space`` (missing entries measured first when ``lut.build``), or None without a path."""
    from fbnas.lut import LatencyTable, build_table

    if not cfg.lut.path:
        return None
    path = Path(cfg.lut.path)
    if cfg.lut.build:
        arch = space.build(space.default_sample()).arch
        with writer_first():  # data-parallel: rank 0 measures, the other ranks then find every entry
            stats = build_table(path, space=space, input_size=arch.input_size, backend=cfg.lut.backend,
                                threads=cfg.lut.threads, in_channels=arch.in_channels, num_classes=num_classes,
                                progress=sys.stderr.isatty(), dtype=cfg.lut.dtype)
        if stats.get("measured"):
            log(f"latency table {path}: measured {stats['measured']} new entries")
    elif not path.exists():
        raise FbnasError(f"lut.path: {path} not found (set lut.build: true to measure it)")
    return LatencyTable(path, backend=cfg.lut.backend, threads=cfg.lut.threads, num_classes=num_classes,
                        allow_fingerprint=cfg.lut.allow_fingerprint, dtype=cfg.lut.dtype)


def cost_model_for(cfg: SearchConfig, space, num_classes: int, lut) -> TermCostModel:
    if cfg.loss.cost == "latency":
        return lut.cost_model(space)
    return analytic_cost_model(space, cfg.loss.cost, num_classes)


def search_data(cfg: SearchConfig, in_channels: int, input_size: int, source: str = "config") -> SearchData:
    d = cfg.data
    return search_loaders(d.name, d.dir, subset=d.subset, theta_split=d.theta_split, batch_size=d.batch_size,
                          seed=cfg.seed, augment=d.augment, channels_last=d.channels_last, in_channels=in_channels,
                          input_size=input_size, source=source, shard=world().shard)


def gumbel_update(net, cost_model, cfg: SearchConfig) -> GumbelUpdate:
    s, t = cfg.schedule, cfg.theta_optimizer
    return GumbelUpdate(net, cost_model, cfg.loss, seed=cfg.seed, tau0=s.tau0, tau_decay=s.tau_decay,
                        warmup_epochs=s.warmup_epochs, lr=t.lr, weight_decay=t.weight_decay)
