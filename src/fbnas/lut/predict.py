"""Build a latency table and predict from it: plain sum per network, and the per-layer matrix for searches.

``LAT(a) = sum_l LAT(b_l)`` (seed 000, eq. 3) plus the fixed stem, head and classifier; for a search, the
space's blocks per dimension option (``Space.cost_terms``) become tables whose weighted sum is the
differentiable expectation (eq. 9, :mod:`fbnas.cost.terms`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    this_device,
)
from fbnas.lut.signature import DTYPE, Entry, network_entry, placed_entry, spec_entries, unique_entries
from fbnas.lut.store import LutStore, describe_device, device_tag
from fbnas.seeding import STREAMS
from fbnas.space.base import DimSpace
from fbnas.space.registry import load_space

if TYPE_CHECKING:
    from fbnas.cost.terms import TermCostModel


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
def term_entries(space: DimSpace, num_classes: int = 1000, batch: int = 1, channels_last: bool = False,
                 dtype: str = DTYPE) -> list[tuple[tuple[str, ...], dict[tuple[int, ...], Entry]]]:
    """The LUT entry of every block of :meth:`Space.cost_terms`: per position, its dims and option combinations."""
    return [(t.dims, {combo: placed_entry(p, batch, channels_last, dtype) for combo, p in t.blocks.items()})
            for t in space.cost_terms(num_classes)]


def space_entries(space: DimSpace, num_classes: int = 1000, batch: int = 1, channels_last: bool = False,
                  dtype: str = DTYPE) -> list[Entry]:
    """Every entry a space's networks can need, in network order (the stem first, the classifier last)."""
    return [e for _, table in term_entries(space, num_classes, batch, channels_last, dtype) for e in table.values()]


def sample_archs(space: DimSpace, n: int, seed: int, stream: int,
                 exclude: frozenset[tuple] = frozenset()) -> list[dict]:
    """``n`` distinct uniform samples of ``space`` keyed by (seed, step, stream), avoiding ``exclude``."""
    out: list[dict] = []
    seen = set(exclude)
    step = 0
    while len(out) < n and step < 100 * n + 100:
        sample = space.sample(seed, step, stream)
        step += 1
        key = tuple(sample.values())
        if key not in seen:
            seen.add(key)
            out.append(sample)
    return out


REFERENCE_NETWORKS = 6


def reference_samples(space: DimSpace, n: int = REFERENCE_NETWORKS) -> list[dict]:
    return sample_archs(space, n, 0, STREAMS["lut_reference"])


def reference_networks(space: DimSpace, n: int = REFERENCE_NETWORKS) -> list[tuple[dict, ArchSpec]]:
    """The ``n`` fixed random networks (sample, arch named ``reference<i>``) a build times beside its blocks."""
    out = []
    for i, s in enumerate(reference_samples(space, n)):
        arch = space.build(s).arch
        assert arch is not None
        out.append((s, arch.copy(name=f"reference{i}")))
    return out


def reference_entries(space: DimSpace, num_classes: int = 1000, batch: int = 1, channels_last: bool = False,
                      n: int = REFERENCE_NETWORKS, dtype: str = DTYPE) -> list[Entry]:
    """``n`` fixed random networks of ``space`` that a build times interleaved with its blocks, so validation
    can put the machine's speed now next to its speed during the build (``validate``'s ``level_factor``)."""
    return [network_entry(arch.name, arch, num_classes, batch, channels_last, dtype)
            for _, arch in reference_networks(space, n)]


def _resolve_space(space: DimSpace | str | Path, input_size: int | None, in_channels: int | None) -> DimSpace:
    if isinstance(space, DimSpace):
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
                   num_classes: int = 1000, batch: int = 1, channels_last: bool = False,
                   dtype: str = DTYPE) -> list[Entry]:
    out: list[Entry] = []
    if space is not None:
        out += space_entries(_resolve_space(space, input_size, in_channels), num_classes, batch, channels_last, dtype)
    for spec in specs:
        out += spec_entries(_resolve_spec(spec, input_size, in_channels), num_classes, batch, channels_last, dtype)
    return unique_entries(out)


# ---- building -------------------------------------------------------------------------------------
def measure_entries(store: LutStore, entries: list[Entry], backend: str, threads: int, channels_last: bool,
                    progress: bool = True, chunk: int = 256, rounds: int = 5, statistic: str = "auto",
                    dtype: str = DTYPE) -> int:
    """Measure ``entries`` interleaved (in chunks of ``chunk``, each saved as soon as it is timed).

    One chunk covers a whole space (111 entries for fbnet_v1 plus its reference networks), so every entry's
    rounds are spread over the same minute of the machine's speed; small chunks would each catch their own.
    """
    from tqdm import tqdm

    runner = Runner(backend, threads, channels_last, statistic, dtype)
    statistic = runner.statistic
    fp = fingerprint(backend, threads, statistic, dtype)
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
                channels_last: bool = False, statistic: str = "auto", rounds: int = 5,
                dtype: str = DTYPE) -> dict[str, Any]:
    """Measure every entry that ``space`` and ``specs`` need and the DB lacks (all of them with ``force``).

    ``statistic``: ``median`` (wall clock), ``cpu_median`` (the thread's CPU clock: time preempted by other
    processes left out; 1 thread only), ``p10`` (wall-clock 10th percentile), their ``*_cold`` variants (L2 evicted
    before every timed call, as inside a network) or ``auto`` (cpu_median_cold for 1 thread,
    else median_cold). Tables and end-to-end checks must use the same one.

    ``dtype="int8"`` (onnxruntime only): every block is exported alone, quantized statically (QDQ, per-channel
    weights, calibrated on random inputs) with its Q/DQ boundaries, and timed in onnxruntime; the rows are keyed
    (and stored under a device) of their own, so they never stand in for fp32 ones.

    After measuring, the end-to-end correction is fitted on the space's reference networks the build timed
    (:func:`fit_build_correction`) and stored in the table, unless one fitted by ``lut fit-correction`` is there.
    """
    check_backend(backend, channels_last, statistic, dtype)
    statistic = resolve_statistic(statistic, threads)
    check_statistic_threads(statistic, threads)
    if space is None and not specs:
        raise FbnasError("lut build: give a search space (--space) and/or architectures (--arch)")
    entries = needed_entries(space, specs, input_size, in_channels, num_classes, batch, channels_last, dtype)
    space_obj = None if space is None else _resolve_space(space, input_size, in_channels)
    refs = [] if space_obj is None else reference_entries(space_obj, num_classes, batch, channels_last, dtype=dtype)
    path = Path(path)
    created = not path.exists()
    store = LutStore(path, create=True)
    try:
        have = set() if force else set(store.get([e.key for e in entries + refs], backend, threads, statistic,
                                                 device=this_device(dtype)))
        missing = [e for e in entries if e.key not in have]
        # the reference networks are re-timed with every batch of new blocks, so both share one stretch of the
        # machine's speed
        timed = missing + refs if missing or any(r.key not in have for r in refs) else []
        if timed:
            measure_entries(store, timed, backend, threads, channels_last, progress, rounds=rounds,
                            statistic=statistic, dtype=dtype)
        fitted = None
        if space_obj is not None:
            fitted = fit_build_correction(store, space_obj, backend, threads, statistic, num_classes, batch,
                                          channels_last, dtype, refit=bool(timed))
    except BaseException:
        empty = created and _count_quietly(store) == 0
        store.close()
        if empty:  # a build that failed before its first measured chunk leaves no empty table behind
            remove_database(path)
        raise
    store.close()
    return {"measured": len(missing), "skipped": len(entries) - len(missing), "total": len(entries),
            "references": len(timed) - len(missing), "dtype": dtype, "correction": fitted}


def fit_build_correction(store: LutStore, space: DimSpace, backend: str, threads: int, statistic: str,
                         num_classes: int = 1000, batch: int = 1, channels_last: bool = False, dtype: str = DTYPE,
                         refit: bool = True) -> dict[str, Any] | None:
    """Fit the end-to-end correction on the reference networks a build times beside the blocks, and store it.

    The reference networks were timed in the same interleaved rounds as the blocks, so their measured times
    and their plain sums describe one stretch of the machine's speed; ``correction.fit`` on them gives
    ``overhead + sum_t scale_t * LUT_ms(type t)`` without a separate command. A correction fitted by
    ``lut fit-correction`` (more networks, ``source`` not ``build``) is kept. Without ``refit`` an existing build
    correction is kept too (nothing was re-timed). Returns what is stored (None: rows missing).
    """
    device = this_device(dtype)
    mf = memory_format(channels_last)
    existing = store.get_correction(backend, threads, mf, statistic, device)
    if existing is not None and (existing.get("source") != "build" or not refit):
        return existing
    networks = reference_networks(space)
    samples = [s for s, _ in networks]
    nets = [(network_entry(arch.name, arch, num_classes, batch, channels_last, dtype),
             spec_entries(arch, num_classes, batch, channels_last, dtype)) for _, arch in networks]
    rows = store.get([ref.key for ref, _ in nets] + [e.key for _, es in nets for e in es], backend, threads,
                     statistic, device=device)
    if any(ref.key not in rows or any(e.key not in rows for e in es) for ref, es in nets) or len(nets) < 3:
        return existing
    per_net = [correction.type_sums([(correction.op_type(e.desc), rows[e.key]["value_ms"]) for e in es])
               for _, es in nets]
    params = correction.fit(per_net, [float(rows[ref.key]["value_ms"]) for ref, _ in nets])
    params.update({"source": "build", "space": space.name, "stream": STREAMS["lut_reference"],
                   "fit_samples": samples, "num_classes": num_classes, "dtype": dtype})
    store.set_correction(backend, threads, mf, params, statistic, device)
    return params


def _count_quietly(store: LutStore) -> int:
    try:
        return store.count()
    except FbnasError:
        return -1


def remove_database(path: Path) -> None:
    """Delete an SQLite file with its WAL and shared-memory companions."""
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


# ---- predicting -----------------------------------------------------------------------------------
class LatencyTable:
    """Read side of a LUT for one backend / thread count / batch / memory format."""

    def __init__(self, path: str | Path, backend: str = "torch", threads: int = 1, batch: int = 1,
                 channels_last: bool = False, num_classes: int | None = None, statistic: str = "auto",
                 allow_fingerprint: str | None = None, dtype: str = DTYPE) -> None:
        check_backend(backend, channels_last, statistic, dtype)
        self.dtype = dtype
        self.statistic = resolve_statistic(statistic, threads)
        check_statistic_threads(self.statistic, threads)
        self.path = Path(path)
        self.backend, self.threads, self.batch = backend, int(threads), int(batch)
        self.channels_last = channels_last
        self.num_classes = num_classes
        self.store = LutStore(self.path)
        self.here = this_device(dtype)
        try:
            self.device = self._allowed(allow_fingerprint) if allow_fingerprint else self.here
        except FbnasError:
            self.store.close()
            raise
        self.allow_fingerprint = allow_fingerprint
        self.correction = self.store.get_correction(backend, self.threads, memory_format(channels_last), self.statistic,
                                                    self.device)

    def _allowed(self, fp: str) -> str:
        """The device ``fp`` names (its full name or its 8-digit fingerprint) among the table's devices."""
        devices = self.store.devices(self.backend, self.threads, self.statistic)
        for d in devices:
            if fp in (d, device_tag(d)):
                return d
        have = ", ".join(describe_device(d) for d in devices) or "none"
        raise FbnasError(f"{self.path}: --allow-fingerprint {fp}: no {self.backend} {self.threads}-thread "
                         f"{self.statistic} rows of that device; the table has: {have}")

    def info(self) -> dict[str, Any]:
        """What a result records about the table it used."""
        return {"path": str(self.path), "backend": self.backend, "threads": self.threads, "dtype": self.dtype,
                "statistic": self.statistic, "device": self.device, "fingerprint": device_tag(self.device),
                "allowed_fingerprint": self.allow_fingerprint}

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
        if self.dtype != DTYPE:
            cmd += f" --dtype {self.dtype}"
        if self.batch != 1:
            cmd += f" --batch {self.batch}"
        if self.channels_last:
            cmd += " --channels-last"
        if self.statistic != resolve_statistic("auto", self.threads):
            cmd += f" --statistic {self.statistic}"
        return cmd + f" --db {self.path}"

    def classes_for(self, cls_entry: Entry) -> int:
        """num_classes given, else the only classifier size stored for this feature size."""
        if self.num_classes is not None:
            return int(self.num_classes)
        d = cls_entry.desc
        sizes = set()
        for r in self.store.rows(self.backend, self.threads, self.statistic, self.device):
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
        classes = self.classes_for(first[-1] if isinstance(first, list) else first[1][-1])
        return (make(classes) if classes != 1000 else first), classes

    def _lookup(self, entries: list[Entry], build_cmd: str) -> dict[str, dict[str, Any]]:
        """The rows of ``entries``, all of one device: this machine's, or the one ``allow_fingerprint`` names.
        Rows of other devices never fill the gaps: a gap they could fill is a one-line error naming both."""
        found = self.store.by_device([e.key for e in entries], self.backend, self.threads, self.statistic)
        rows = found.get(self.device, {})
        missing = [e for e in entries if e.key not in rows]
        others = {d: r for d, r in found.items() if d != self.device and r}
        if missing and others:
            other = max(others, key=lambda d: len(others[d]))
            who = "the requested device" if self.allow_fingerprint else "this machine"
            what = (f"{self.path}: the {self.backend} {self.threads}-thread {self.statistic} rows this needs "
                    f"{'come from two devices' if rows else 'were measured on another device'}: ")
            if rows:
                what += (f"{len(rows)} of {describe_device(self.device)} ({who}) and {len(others[other])} of "
                         f"{describe_device(other)}")
            else:
                what += f"{describe_device(other)}, not {describe_device(self.device)} ({who})"
            raise FbnasError(f"{what}; a prediction uses one device's rows: measure them here (`{build_cmd}`) or "
                             f"pass --allow-fingerprint {device_tag(other)} (search config: lut.allow_fingerprint) "
                             "to use that device's")
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
        entries, classes = self._entries(lambda k: spec_entries(spec, k, self.batch, cl, self.dtype))
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
    def _space_cmd(self, space: DimSpace, classes: int) -> str:
        """How to add a space's missing entries: ``fbnas lut build --space NAME`` for a shipped space, else the
        search's own ``lut.build: true`` (a space given inline in a config has no name to build from)."""
        from fbnas.space.registry import space_names

        if space.name not in space_names():
            return "a search with lut.build: true (it measures what the table lacks)"
        arch = space.build(space.default_sample()).arch
        assert arch is not None
        return self._build_cmd(f"--space {space.name}", arch.input_size, arch.in_channels, classes)

    def cost_model(self, space: DimSpace) -> TermCostModel:
        """The space's latency as per-position tables (ms), differentiable in the architecture weights; one
        error naming the ``lut build`` command when an entry is missing."""
        from fbnas.cost.terms import term_cost_model

        cl = self.channels_last
        first = term_entries(space, 1000, self.batch, cl, self.dtype)
        classes = self.classes_for(next(iter(first[-1][1].values())))  # the classifier's entry
        tables = first if classes == 1000 else term_entries(space, classes, self.batch, cl, self.dtype)
        rows = self._lookup([e for _, t in tables for e in t.values()], self._space_cmd(space, classes))

        def value(p) -> float:
            return float(rows[placed_entry(p, self.batch, cl, self.dtype).key]["value_ms"])

        return term_cost_model(space, "latency", classes, value)
