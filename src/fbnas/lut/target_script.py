"""Measure exported fbnas blocks on a target device with onnxruntime and numpy only (no fbnas, no torch).

Usage on the target:  python target_script.py OPS_DIR --threads 1 --out results.json
OPS_DIR is what ``fbnas lut export-ops`` wrote (manifest.json plus one .onnx file per block). Load the
results back with ``fbnas lut import --db FILE results.json``. fbnas itself times its onnxruntime
entries with the functions below, so a table built on the host and one built on a target agree on the
protocol (warm-up, interleaved rounds, median with IQR).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from collections.abc import Callable
from typing import Any

RESULTS_FORMAT = "fbnas-lut-results/1"


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux), else what platform reports."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


# name -> (quantile of the per-call times, clock). ``cpu_median`` times with the calling thread's CPU clock,
# which leaves out time the thread spent preempted by other processes (only meaningful for 1 thread).
# ``*_cold`` variants overwrite an EVICT_BYTES buffer (larger than a core's L2) before every timed call, so a
# block finds its weights and input in L3 rather than L2, as it does inside a network where the previous
# blocks ran in between; repeated warm calls of one isolated block under-predict a whole network.
STATISTICS = {"median": (0.5, "wall"), "p10": (0.1, "wall"), "cpu_median": (0.5, "cpu"),
              "median_cold": (0.5, "wall"), "cpu_median_cold": (0.5, "cpu")}
EVICT_BYTES = 4 << 20


def _evictor(statistic: str) -> Callable[[], Any] | None:
    """A callable that pushes the timed callable's working set out of L2, for the ``*_cold`` statistics."""
    if not statistic.endswith("_cold"):
        return None
    buf = bytearray(EVICT_BYTES)
    view = memoryview(buf)
    state = {"v": 0}

    def evict() -> None:
        state["v"] = (state["v"] + 1) & 0xFF
        view[:] = bytes([state["v"]]) * EVICT_BYTES

    return evict


def resolve_statistic(statistic: str, threads: int) -> str:
    """``auto``: the cold-cache CPU-clock median for 1 thread (robust on a shared machine), the cold-cache
    wall-clock median otherwise."""
    if statistic == "auto":
        return "cpu_median_cold" if int(threads) == 1 else "median_cold"
    return statistic


def robust_stats(samples: list[float], statistic: str = "median") -> dict[str, float | int]:
    """The statistic (median, or the 10th percentile that load from other processes barely moves),
    the interquartile range and the count of ``samples`` (milliseconds)."""
    xs = sorted(samples)
    n = len(xs)

    def q(p: float) -> float:
        pos = p * (n - 1)
        lo = int(pos)
        hi = min(lo + 1, n - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)

    return {"value_ms": q(STATISTICS[statistic][0]), "spread_ms": q(0.75) - q(0.25), "samples": n}


def measure_all(fns: dict[str, Callable[[], Any]], rounds: int = 5, round_budget_s: float = 0.08,
                min_per_round: int = 3, max_per_round: int = 40, warmup_s: float = 0.03,
                progress: Callable[[int], None] | None = None,
                statistic: str = "median") -> dict[str, dict[str, float | int]]:
    """Time every callable: warm-up, then ``rounds`` interleaved rounds of adaptive repeats; median + IQR.

    Interleaving (in a new shuffled order every round) spreads bursts of load from other processes over
    all entries instead of hitting one or a run of neighbours.
    The repeat count per round adapts to the callable's speed so a whole table stays fast to build.
    """
    per_round: dict[str, int] = {}
    samples: dict[str, list[float]] = {k: [] for k in fns}
    clock = time.thread_time if STATISTICS[statistic][1] == "cpu" else time.perf_counter
    evict = _evictor(statistic)
    for key, fn in fns.items():  # warm-up and speed estimate
        t_start = time.perf_counter()
        times = []
        while len(times) < 3 or (time.perf_counter() - t_start < warmup_s and len(times) < 200):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        est = sorted(times[1:])[len(times[1:]) // 2]
        per_round[key] = int(max(min_per_round, min(max_per_round, round_budget_s / max(est, 1e-7))))
    order = list(fns)
    shuffler = random.Random(0)
    for _ in range(rounds):
        shuffler.shuffle(order)  # a new order each round: periodic load elsewhere cannot hit the same entries
        for key in order:
            fn = fns[key]
            fn()  # re-warm caches after the other entries ran
            buf = samples[key]
            for _ in range(per_round[key]):
                if evict is not None:
                    evict()
                t0 = clock()
                fn()
                buf.append((clock() - t0) * 1e3)
            if progress is not None:
                progress(1)
    return {k: robust_stats(v, statistic) for k, v in samples.items()}


def measure_paired(fns: dict[str, Callable[[], Any]], anchors: dict[str, Callable[[], Any]],
                   anchors_stored_ms: float, rounds: int = 9, repeats: int = 3, window: int = 15,
                   progress: Callable[[int], None] | None = None,
                   statistic: str = "median") -> dict[str, dict[str, float | int]]:
    """Time every callable with the ``anchors`` timed right before each call, to take out the speed drift.

    A shared VM's speed drifts by tens of percent over seconds, so in a plain interleaved measurement one
    network may catch a slow minute and its neighbour a fast one. Here each timed call of ``fns[k]`` is
    preceded by one call of every anchor. The anchors' summed time (running median over ``window`` calls, as
    one pass is noisy and the drift is slow) over its median for the whole run is the machine's speed at that
    moment relative to the run; dividing the call's time by it gives a compensated sample. The level stays
    the run's own (no comparison with the table's build is folded in). Returns, per key: ``value_ms``
    (statistic of the raw samples), ``compensated_ms`` (of the compensated ones) and ``speed_factor``
    (median of the anchors' time / ``anchors_stored_ms``: above 1, slower now than when they were stored).
    """
    calls: list[tuple[str, float, float]] = []  # key, time, anchors' time right before
    clock = time.thread_time if STATISTICS[statistic][1] == "cpu" else time.perf_counter
    evict = _evictor(statistic)

    def timed(fn: Callable[[], Any]) -> float:
        fn()  # as in measure_all: the data was touched by the previous call, then L2 is flushed
        if evict is not None:
            evict()
        t0 = clock()
        fn()
        return (clock() - t0) * 1e3

    for fn in [*fns.values(), *anchors.values()]:  # warm-up
        fn()
    order = list(fns)
    shuffler = random.Random(0)
    for _ in range(rounds):
        shuffler.shuffle(order)
        for key in order:
            for _ in range(repeats):
                ref = sum(timed(a) for a in anchors.values())
                calls.append((key, timed(fns[key]), ref))
            if progress is not None:
                progress(1)
    refs = [c[2] for c in calls]
    run_ref = robust_stats(refs, "median")["value_ms"]
    # the drift is slow (seconds) and one anchor pass is noisy, so each call uses the running median of the
    # anchor passes around it (``window`` calls, about a second)
    half = window // 2
    speed = [robust_stats(refs[max(0, i - half): i + half + 1], "median")["value_ms"] for i in range(len(refs))]
    out: dict[str, dict[str, float | int]] = {}
    for k in fns:
        mine = [(t, sp) for (key, t, _), sp in zip(calls, speed, strict=True) if key == k]
        stats = robust_stats([t for t, _ in mine], statistic)
        stats["compensated_ms"] = robust_stats([t * run_ref / sp for t, sp in mine], statistic)["value_ms"]
        stats["speed_factor"] = robust_stats([sp / anchors_stored_ms for _, sp in mine], "median")["value_ms"]
        out[k] = stats
    return out


def make_session(model: bytes | str, threads: int):
    """CPU inference session with a fixed intra-op thread count and sequential execution."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


def session_callable(sess, shape: list[int]) -> Callable[[], Any]:
    import numpy as np

    name = sess.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    feeds = {name: x}
    return lambda: sess.run(None, feeds)


def fingerprint(threads: int, statistic: str = "median") -> dict[str, Any]:
    import numpy as np
    import onnxruntime as ort

    return {"cpu": cpu_model(), "machine": platform.machine(), "threads": int(threads), "backend": "onnxruntime",
            "onnxruntime": ort.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "statistic": statistic}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="measure fbnas-exported ONNX blocks with onnxruntime")
    ap.add_argument("ops_dir", help="folder written by `fbnas lut export-ops` (has manifest.json)")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    ap.add_argument("--out", default="results.json", help="where to write the results JSON")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    ap.add_argument("--statistic", default=None, choices=["auto", *sorted(STATISTICS)],
                    help="statistic per op (default: the manifest's, else auto: cpu_median_cold for 1 thread, "
                         "else median_cold)")
    args = ap.parse_args(argv)
    manifest_path = os.path.join(args.ops_dir, "manifest.json")
    try:
        with open(manifest_path, encoding="utf-8") as f:
            manifest = json.load(f)
        ops = manifest["ops"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"target_script: error: {manifest_path}: not a readable fbnas export manifest ({e})", file=sys.stderr)
        return 2
    fns = {}
    blocks = {op["key"]: op.get("block") for op in ops}
    for op in ops:
        sess = make_session(os.path.join(args.ops_dir, op["file"]), args.threads)
        fns[op["key"]] = session_callable(sess, op["input_shape"])
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        if sys.stderr.isatty():
            print(f"\r{done[0]}/{len(fns) * args.rounds}", end="", file=sys.stderr)

    statistic = resolve_statistic(args.statistic or manifest.get("statistic", "auto"), args.threads)
    stats = measure_all(fns, rounds=args.rounds, progress=tick, statistic=statistic)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    result = {"format": RESULTS_FORMAT, "fingerprint": fingerprint(args.threads, statistic), "threads": args.threads,
              "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "results": [{"key": k, **v, "block": blocks[k]} for k, v in stats.items()]}
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, args.out)
    print(f"measured {len(stats)} ops -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
