"""A measured step-time table: the forward + backward time of every block a space can place, at a training
batch size, summed per network. Seed 004's training-aware reward of EfficientNetV2 (``A * S^w * P^v``) needs
S, the normalised training step time; FBNetV3's JointNAS uses this table for it.

The table is a JSON file ``{"meta": {...}, "entries": {key: ms}}`` keyed like the latency table
(:func:`fbnas.lut.signature.placed_entry` at the training batch size and memory format). Entries come from the
space's cost walk (``cost_terms``), so every network of the space is covered; missing ones are measured
(interleaved rounds, the thread's CPU clock with one thread) and the file is rewritten atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fbnas.errors import FbnasError
from fbnas.lut.signature import Entry, placed_entry

SCHEMA = "fbnas.steptime/1"


def _step_fn(entry: Entry, channels_last: bool):
    import torch

    from fbnas.lut.measure import build_module, input_shape

    module = build_module(entry.desc).train()
    x = torch.randn(*input_shape(entry.desc), generator=torch.Generator().manual_seed(0))
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:  # nothing to differentiate: time the forward alone
        return lambda: module(x)
    x.requires_grad_(True)

    def step() -> None:
        out = module(x)
        out.float().sum().backward()
        for p in params:
            p.grad = None
        x.grad = None

    return step


class StepTimeTable:
    """Forward + backward ms per block at ``batch`` (one thread), read from and written to ``path``."""

    def __init__(self, path: str | Path, batch: int = 32, channels_last: bool = True, threads: int = 1) -> None:
        self.path, self.batch, self.channels_last, self.threads = Path(path), int(batch), channels_last, int(threads)
        self.meta = {"schema": SCHEMA, "batch": self.batch, "channels_last": channels_last, "threads": self.threads}
        self.entries: dict[str, float] = {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise FbnasError(f"{self.path}: not a readable step-time table ({type(e).__name__})") from None
            meta = data.get("meta") if isinstance(data, dict) else None
            if meta != self.meta:
                raise FbnasError(f"{self.path}: a step-time table of another setting ({meta}); expected {self.meta}")
            self.entries = {str(k): float(v) for k, v in data.get("entries", {}).items()}

    def entry(self, placed) -> Entry:
        return placed_entry(placed, self.batch, self.channels_last)

    def save(self) -> None:
        from fbnas.io import atomic_write_json

        atomic_write_json(self.path, {"meta": self.meta, "entries": self.entries})

    def measure(self, entries: list[Entry], rounds: int = 2, progress: Any = None, chunk: int = 200) -> int:
        """Time the entries the table lacks (saved after every chunk); returns how many were measured."""
        from fbnas.lut.measure import torch_threads
        from fbnas.lut.target_script import measure_all
        from fbnas.runtime import tune_allocator

        todo = list({e.key: e for e in entries if e.key not in self.entries}.values())
        tune_allocator()
        statistic = "cpu_median" if self.threads == 1 else "median"
        with torch_threads(self.threads):
            for i in range(0, len(todo), chunk):
                part = todo[i:i + chunk]
                fns = {e.key: _step_fn(e, self.channels_last) for e in part}
                stats = measure_all(fns, rounds=rounds, round_budget_s=0.02, min_per_round=2, warmup_s=0.005,
                                    statistic=statistic)
                self.entries.update({k: float(v["value_ms"]) for k, v in stats.items()})
                self.save()
                if progress is not None:
                    progress(min(len(todo), i + chunk), len(todo))
        return len(todo)

    def build_for(self, space, num_classes: int, rounds: int = 2, progress: Any = None) -> int:
        """Measure every block of ``space``'s cost walk the table lacks."""
        entries = [self.entry(p) for t in space.cost_terms(num_classes) for p in t.blocks.values()]
        return self.measure(entries, rounds, progress)

    def predict(self, arch, num_classes: int) -> float:
        """The network's training step time (ms): the sum of its blocks' entries."""
        from fbnas.cost.placement import place

        total = 0.0
        for p in place(arch, num_classes):
            key = self.entry(p).key
            if key not in self.entries:
                raise FbnasError(f"{self.path}: no step time for block {p.name} of {arch.name}; measure the space "
                                 "first (StepTimeTable.build_for)")
            total += self.entries[key]
        return total
