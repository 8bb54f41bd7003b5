"""What the data-parallel tests run in their spawned ranks (importable by a fresh interpreter): tiny DNAS and
DMaskingNAS searches, and a batch norm that is frozen for the loss comparison (per-rank BN statistics aside)."""

from __future__ import annotations

import contextlib
import copy
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# seconds-long versions of the strategies' smoke configs: global batch 16 (8 per rank), one warm-up and one
# search epoch; DNAS draws per-image Gumbel noise, so every rank must take its rows of the global draw
TINY: dict[str, dict[str, Any]] = {
    "dnas": {"space": {"name": "fbnet_fmnist", "input_size": 8, "in_channels": 1, "width_multiplier": 0.25},
             "data": {"name": "synthetic", "subset": 96, "batch_size": 16},
             "schedule": {"epochs": 2, "warmup_epochs": 1},
             "supernet": {"mode": "hard", "noise": "sample"}, "loss": {"cost": "macs", "cost_scale": 100.0}},
    "dmasking": {"data": {"name": "synthetic", "subset": 96, "batch_size": 16},
                 "schedule": {"epochs": 2, "warmup_epochs": 1}},
}


def tiny_config(name: str):
    from fbnas.search.strategy import get_strategy

    strategy = get_strategy(name)
    doc = copy.deepcopy(strategy.smoke_config)
    for key, value in TINY[name].items():
        doc[key] = {**doc.get(key, {}), **value}
    return strategy, strategy.config_model.parse(doc, f"tiny {name}")


@contextlib.contextmanager
def frozen_bn() -> Iterator[None]:
    """Batch norm with its (initial) running statistics, in training too: the loss then no longer depends on
    how the global batch is split over the ranks (what "BN aside" means in the comparison)."""
    original = nn.BatchNorm2d.forward

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)

    nn.BatchNorm2d.forward = forward  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.BatchNorm2d.forward = original  # type: ignore[method-assign]


def search_rank(rank: int, world: int, port: int, out: str, names: list[str]) -> None:
    """One rank: every search of ``names`` twice (real BN) and once with BN frozen, each step checked by
    all-gather (FBNAS_DDP_CHECK); then a negative control of the check itself."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), FBNAS_DDP_CHECK="1", OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    import torch.distributed as dist

    from fbnas import distributed
    from fbnas.errors import FbnasError
    from fbnas.search.strategy import run_search

    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        report: dict[str, Any] = {}
        for name in names:
            strategy, cfg = tiny_config(name)
            before = distributed.checks_done
            for run in ("a", "b"):
                run_search(strategy, cfg, Path(out) / f"{name}_{run}", log=lambda m: None)
            with frozen_bn():
                run_search(strategy, cfg, Path(out) / f"{name}_frozen", log=lambda m: None)
            report[name] = {"checks": distributed.checks_done - before}
        # negative control: one rank's parameter perturbed must fail the check on every rank
        p = torch.zeros(3)
        if rank == 1:
            p[0] = 1e-6
        try:
            distributed.check_identical([p], "weights")
            report["control"] = "passed"
        except FbnasError as e:
            report["control"] = str(e)
        (Path(out) / f"rank{rank}.json").write_text(json.dumps(report))
    except BaseException:
        dist.destroy_process_group()
        raise
    distributed.end_process(0)  # what a finished rank of `fbnas` does (no interpreter exit: see its docstring)
