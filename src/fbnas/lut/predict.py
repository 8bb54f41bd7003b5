"""Build a latency table and predict from it: plain sum per network, and the per-layer matrix for searches.

``LAT(a) = sum_l LAT(b_l)`` (seed 000, eq. 3) plus the fixed stem, head and classifier; for a search with
architecture weights ``m_li`` the differentiable expectation is ``fixed_ms + sum_l sum_i m_li * M[l, i]``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fbnas.arch.spec import ArchSpec
from fbnas.errors import FbnasError
from fbnas.lut import correction
from fbnas.lut.measure import (
    Runner,
    build_module,
    check_backend,
    check_statistic_threads,
    fingerprint,
    input_shape,
    resolve_statistic,
)
from fbnas.lut.signature import Entry, network_entry, spec_entries, unique_entries
from fbnas.lut.store import LutStore
from fbnas.search.gumbel import step_generator
from fbnas.space.space import SearchSpace, load_space


@dataclass
class Prediction:
    total_ms: float
    blocks: list[tuple[str, str, float]] = field(default_factory=list)  # (name, key, ms)
    corrected_ms: float | None = None  # only when a fitted correction exists; never replaces total_ms
    spread_ms: float = 0.0  # sum of the entries' IQRs: a rough noise indicator
    by_type: dict[str, float] = field(default_factory=dict)  # LUT ms per op type (what the correction scales)

    def to_dict(self) -> dict[str, Any]:
        return {"total_ms": self.total_ms, "corrected_ms": self.corrected_ms, "spread_ms": self.spread_ms,
                "blocks": [{"name": n, "key": k, "ms": ms} for n, k, ms in self.blocks]}


def memory_format(channels_last: bool) -> str:
    return "channels_last" if channels_last else "contiguous"


# ---- which entries a space needs ------------------------------------------------------------------
def space_entries(space: SearchSpace, num_classes: int = 1000, batch: int = 1,
                  channels_last: bool = False) -> tuple[list[list[Entry]], list[Entry]]:
    """(per searchable layer: one entry per candidate, fixed entries: stem, fixed stages, classifier)."""
    n_choices = space.num_choices()
    fixed_pos = set(space.fixed_positions())
    per_layer: list[list[Entry]] = [[] for _ in n_choices]
    fixed: list[Entry] = []
    for ci in range(max(n_choices)):
        ents = spec_entries(space.to_spec([min(ci, n - 1) for n in n_choices]), num_classes, batch, channels_last)
        blocks, classifier = ents[:-1], ents[-1]
        search_pos = [p for p in range(len(blocks)) if p not in fixed_pos]
        for li, p in enumerate(search_pos):
            if ci < n_choices[li]:
                per_layer[li].append(blocks[p])
        if ci == 0:
            fixed = [blocks[p] for p in sorted(fixed_pos)] + [classifier]
    return per_layer, fixed


# sample streams of (seed, step, stream): end-to-end validation, correction fit, reference networks
VALIDATE_STREAM, FIT_STREAM, REFERENCE_STREAM = 0, 1, 3
REFERENCE_NETWORKS = 6


def sample_choices(space: SearchSpace, n: int, seed: int, stream: int,
                   exclude: set[tuple[int, ...]] = frozenset()) -> list[list[int]]:  # type: ignore[assignment]
    """``n`` distinct random choice vectors from (seed, step, stream), avoiding ``exclude``."""
    out: list[list[int]] = []
    seen = set(exclude)
    step = 0
    while len(out) < n and step < 100 * n + 100:
        g = step_generator(seed, step, stream)
        c = [int(torch.randint(k, (1,), generator=g)) for k in space.num_choices()]
        step += 1
        if tuple(c) not in seen:
            seen.add(tuple(c))
            out.append(c)
    return out


def reference_entries(space: SearchSpace, num_classes: int = 1000, batch: int = 1, channels_last: bool = False,
                      n: int = REFERENCE_NETWORKS) -> list[Entry]:
    """``n`` fixed random networks of ``space`` that a build times interleaved with its blocks, so validation
    can put the machine's speed now next to its speed during the build (``validate``'s ``level_factor``)."""
    choices = sample_choices(space, n, 0, REFERENCE_STREAM)
    return [network_entry(f"reference{i}", space.to_spec(c, name=f"reference{i}"), num_classes, batch, channels_last)
            for i, c in enumerate(choices)]


def _resolve_space(space: SearchSpace | str | Path, input_size: int | None, in_channels: int | None) -> SearchSpace:
    if isinstance(space, SearchSpace):
        return space
    return load_space(space, input_size=input_size, in_channels=in_channels)


def _resolve_spec(spec: Any, input_size: int | None, in_channels: int | None) -> ArchSpec:
    from fbnas.arch.zoo import resolve_arch

    s = resolve_arch(spec)
    changes = {}
    if input_size and input_size != s.input_size:
        changes["input_size"] = int(input_size)
    if in_channels and in_channels != s.in_channels:
        changes["in_channels"] = int(in_channels)
    return s.copy(**changes) if changes else s


def needed_entries(space: Any = None, specs: Any = (), input_size: int | None = None, in_channels: int | None = None,
                   num_classes: int = 1000, batch: int = 1, channels_last: bool = False) -> list[Entry]:
    out: list[Entry] = []
    if space is not None:
        per_layer, fixed = space_entries(_resolve_space(space, input_size, in_channels), num_classes, batch,
                                         channels_last)
        out += fixed[:1] + [e for layer in per_layer for e in layer] + fixed[1:]
    for spec in specs:
        out += spec_entries(_resolve_spec(spec, input_size, in_channels), num_classes, batch, channels_last)
    return unique_entries(out)


# ---- building -------------------------------------------------------------------------------------
def measure_entries(store: LutStore, entries: list[Entry], backend: str, threads: int, channels_last: bool,
                    progress: bool = True, chunk: int = 256, rounds: int = 5, statistic: str = "auto") -> int:
    """Measure ``entries`` interleaved (in chunks of ``chunk``, each saved as soon as it is timed).

    One chunk covers a whole space (111 entries for fbnet_v1 plus its reference networks), so every entry's
    rounds are spread over the same minute of the machine's speed; small chunks would each catch their own.
    """
    from tqdm import tqdm

    runner = Runner(backend, threads, channels_last, statistic)
    statistic = runner.statistic
    fp = fingerprint(backend, threads, statistic)
    bar = tqdm(total=len(entries) * rounds, desc=f"lut {backend}", unit="op", file=sys.stderr,
               disable=not progress or not sys.stderr.isatty(), leave=False)
    try:
        for i in range(0, len(entries), chunk):
            part = entries[i:i + chunk]
            items = {e.key: (build_module(e.desc), input_shape(e.desc)) for e in part}
            stats = runner.measure(items, rounds=rounds, progress=bar.update)
            store.put(({"key": e.key, **stats[e.key], "block": e.desc} for e in part), backend, threads, fp,
                      statistic)
    finally:
        bar.close()
    return len(entries)


def build_table(path: str | Path, space: Any = None, specs: Any = (), input_size: int | None = None,
                backend: str = "torch", threads: int = 1, force: bool = False, progress: bool = True,
                in_channels: int | None = None, num_classes: int = 1000, batch: int = 1,
                channels_last: bool = False, statistic: str = "auto", rounds: int = 5) -> dict[str, int]:
    """Measure every entry that ``space`` and ``specs`` need and the DB lacks (all of them with ``force``).

    ``statistic``: ``median`` (wall clock), ``cpu_median`` (the thread's CPU clock: time preempted by other
    processes left out; 1 thread only), ``p10`` (wall-clock 10th percentile), their ``*_cold`` variants (L2 evicted
    before every timed call, as inside a network) or ``auto`` (cpu_median_cold for 1 thread,
    else median_cold). Tables and end-to-end checks must use the same one.
    """
    check_backend(backend, channels_last, statistic)
    statistic = resolve_statistic(statistic, threads)
    check_statistic_threads(statistic, threads)
    if space is None and not specs:
        raise FbnasError("lut build: give a search space (--space) and/or architectures (--arch)")
    entries = needed_entries(space, specs, input_size, in_channels, num_classes, batch, channels_last)
    refs = [] if space is None else reference_entries(_resolve_space(space, input_size, in_channels), num_classes,
                                                      batch, channels_last)
    with LutStore(path, create=True) as store:
        have = set() if force else set(store.get([e.key for e in entries + refs], backend, threads, statistic))
        missing = [e for e in entries if e.key not in have]
        # the reference networks are re-timed with every batch of new blocks, so both share one stretch of the
        # machine's speed
        timed = missing + refs if missing or any(r.key not in have for r in refs) else []
        if timed:
            measure_entries(store, timed, backend, threads, channels_last, progress, rounds=rounds,
                            statistic=statistic)
    return {"measured": len(missing), "skipped": len(entries) - len(missing), "total": len(entries),
            "references": len(timed) - len(missing)}


# ---- predicting -----------------------------------------------------------------------------------
class LatencyTable:
    """Read side of a LUT for one backend / thread count / batch / memory format."""

    def __init__(self, path: str | Path, backend: str = "torch", threads: int = 1, batch: int = 1,
                 channels_last: bool = False, num_classes: int | None = None, statistic: str = "auto") -> None:
        check_backend(backend, channels_last, statistic)
        self.statistic = resolve_statistic(statistic, threads)
        check_statistic_threads(self.statistic, threads)
        self.path = Path(path)
        self.backend, self.threads, self.batch = backend, int(threads), int(batch)
        self.channels_last = channels_last
        self.num_classes = num_classes
        self.store = LutStore(self.path)
        self.correction = self.store.get_correction(backend, self.threads, memory_format(channels_last), self.statistic)

    def close(self) -> None:
        self.store.close()

    # -- lookups
    def _build_cmd(self, target: str, input_size: int, in_channels: int, num_classes: int) -> str:
        cmd = f"fbnas lut build {target} --input-size {input_size}"
        if in_channels != 3:
            cmd += f" --in-channels {in_channels}"
        if num_classes != 1000:
            cmd += f" --num-classes {num_classes}"
        cmd += f" --backend {self.backend} --threads {self.threads}"
        if self.batch != 1:
            cmd += f" --batch {self.batch}"
        if self.channels_last:
            cmd += " --channels-last"
        if self.statistic != resolve_statistic("auto", self.threads):
            cmd += f" --statistic {self.statistic}"
        return cmd + f" --db {self.path}"

    def _classes_for(self, cls_entry: Entry) -> int:
        """num_classes given, else the only classifier size stored for this feature size."""
        if self.num_classes is not None:
            return int(self.num_classes)
        d = cls_entry.desc
        sizes = set()
        for r in self.store.rows(self.backend, self.threads, self.statistic):
            b = r["block"]
            if b.get("kind") == "classifier" and all(b.get(k) == d[k] for k in ("cin", "h", "w", "batch",
                                                                                 "memory_format")):
                sizes.add(int(b["cout"]))
        if len(sizes) > 1:
            raise FbnasError(f"{self.path}: classifiers for {sorted(sizes)} classes are stored; "
                             "pass num_classes (--num-classes) to choose")
        return sizes.pop() if sizes else 1000

    def _entries(self, make: Any) -> tuple[Any, Any]:
        """Call ``make(num_classes)`` once with 1000 to find the classifier shape, again with the real count."""
        first = make(1000)
        classes = self._classes_for(first[-1] if isinstance(first, list) else first[1][-1])
        return (make(classes) if classes != 1000 else first), classes

    def _lookup(self, entries: list[Entry], build_cmd: str) -> dict[str, dict[str, Any]]:
        rows = self.store.get([e.key for e in entries], self.backend, self.threads, self.statistic)
        for e in entries:
            if e.key not in rows:
                raise FbnasError(f"{self.path}: no {self.backend} {self.threads}-thread {self.statistic} latency for "
                                 f"block {e.name} "
                                 f"({e.label}); add it with `{build_cmd}`")
        return rows

    # -- plain sum
    def predict(self, spec: Any, source: str | None = None) -> Prediction:
        """Plain sum over blocks + classifier with a per-block breakdown (and the correction beside it)."""
        from fbnas.arch.zoo import PUBLISHED, resolve_arch

        spec = resolve_arch(spec)
        cl = self.channels_last
        entries, classes = self._entries(lambda k: spec_entries(spec, k, self.batch, cl))
        target = source or (spec.name if spec.name in PUBLISHED else "SPEC_FILE")
        rows = self._lookup(entries, self._build_cmd(f"--arch {target}", spec.input_size, spec.in_channels, classes))
        blocks = [(e.name, e.key, float(rows[e.key]["value_ms"])) for e in entries]
        sums = correction.type_sums([(correction.op_type(e.desc), rows[e.key]["value_ms"]) for e in entries])
        pred = Prediction(sum(ms for _, _, ms in blocks), blocks,
                          spread_ms=sum(float(rows[e.key]["spread_ms"]) for e in entries), by_type=sums)
        if self.correction:
            pred.corrected_ms = correction.apply(self.correction, sums)
        return pred

    # -- search side
    def _space_rows(self, space: SearchSpace) -> tuple[list[list[Entry]], list[Entry], dict[str, dict[str, Any]]]:
        cl = self.channels_last
        (per_layer, fixed), classes = self._entries(lambda k: space_entries(space, k, self.batch, cl))
        cmd = self._build_cmd(f"--space {space.name}", space.input_size, space.in_channels, classes)
        rows = self._lookup(fixed + [e for layer in per_layer for e in layer], cmd)
        return per_layer, fixed, rows

    def layer_matrix(self, space: SearchSpace) -> torch.Tensor:
        """``[num_layers, max_choices]`` ms of every candidate; ``+inf`` where a layer has fewer choices."""
        per_layer, _, rows = self._space_rows(space)
        width = max(len(layer) for layer in per_layer)
        m = torch.full((len(per_layer), width), float("inf"), dtype=torch.float32)
        for li, layer in enumerate(per_layer):
            for ci, e in enumerate(layer):
                m[li, ci] = float(rows[e.key]["value_ms"])
        return m

    def fixed_ms(self, space: SearchSpace) -> float:
        """ms of the fixed stages (stem, head) plus the classifier."""
        _, fixed, rows = self._space_rows(space)
        return float(sum(rows[e.key]["value_ms"] for e in fixed))

    def expected_ms(self, space: SearchSpace, weights: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """Differentiable ``fixed_ms + sum_l sum_i m_li * M[l, i]`` for weights ``[L, K]`` or per-layer vectors."""
        m = self.layer_matrix(space)
        fixed = self.fixed_ms(space)
        total = torch.zeros((), dtype=torch.float32)
        for li, k in enumerate(space.num_choices()):
            w = weights[li][:k]
            total = total + (w * m[li, :k].to(w.dtype)).sum()
        return total + fixed
