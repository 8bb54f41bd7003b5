"""Drift compensation of end-to-end measurements (target_script.measure_paired) on a virtual clock."""

from __future__ import annotations

import random

import pytest

from fbnas.lut import target_script


class VirtualClock:
    """Replaces ``time`` in target_script: callables advance it by ``base * speed`` of the current pair."""

    def __init__(self, speeds: list[float], warmup_calls: int, calls_per_pair: int) -> None:
        self.now = 0.0
        self.calls = 0
        self.speeds, self.warmup, self.per_pair = speeds, warmup_calls, calls_per_pair

    def perf_counter(self) -> float:
        return self.now

    thread_time = perf_counter

    def work(self, base_ms: float):
        def fn() -> None:
            pair = max(0, self.calls - self.warmup) // self.per_pair
            self.now += base_ms * 1e-3 * self.speeds[pair % len(self.speeds)]
            self.calls += 1
        return fn


@pytest.mark.parametrize("n_anchors", [1, 3])
def test_compensation_cancels_speed_drift_exactly(monkeypatch, n_anchors):
    rng = random.Random(1)
    speeds = [rng.uniform(0.6, 1.8) for _ in range(997)]  # the machine's speed per measured pair
    fns_base = {"a": 10.0, "b": 20.0, "c": 35.0}
    # each timed call (anchors and network) is one warm call + one timed call: 2 * (anchors + 1) per pair
    clock = VirtualClock(speeds, warmup_calls=len(fns_base) + n_anchors, calls_per_pair=2 * (n_anchors + 1))
    monkeypatch.setattr(target_script, "time", clock)
    fns = {k: clock.work(b) for k, b in fns_base.items()}
    anchors = {f"x{i}": clock.work(1.0 + i) for i in range(n_anchors)}
    stored = sum(1.0 + i for i in range(n_anchors))
    out = target_script.measure_paired(fns, anchors, anchors_stored_ms=stored, rounds=7, repeats=3, window=1)
    comp = {k: out[k]["compensated_ms"] for k in fns}
    raw = {k: out[k]["value_ms"] for k in fns}
    # compensated times keep the true ratios whatever speed each call caught ...
    assert comp["b"] / comp["a"] == pytest.approx(2.0, rel=1e-9)
    assert comp["c"] / comp["a"] == pytest.approx(3.5, rel=1e-9)
    # ... at the run's median speed, while the raw medians caught different speeds
    assert comp["a"] == pytest.approx(10.0 * sorted(speeds[:63])[31], rel=1e-9)
    assert raw["c"] / raw["a"] != pytest.approx(3.5, rel=1e-3)
    assert all(out[k]["samples"] == 21 for k in fns)
    assert out["a"]["speed_factor"] > 0


def test_without_drift_compensated_equals_raw(monkeypatch):
    clock = VirtualClock([1.3], warmup_calls=3, calls_per_pair=4)
    monkeypatch.setattr(target_script, "time", clock)
    out = target_script.measure_paired({"a": clock.work(4.0), "b": clock.work(8.0)}, {"x": clock.work(2.0)},
                                       anchors_stored_ms=2.0, rounds=3, repeats=2)  # default window
    for k, base in (("a", 4.0), ("b", 8.0)):
        assert out[k]["value_ms"] == pytest.approx(base * 1.3)
        assert out[k]["compensated_ms"] == pytest.approx(base * 1.3)
        assert out[k]["speed_factor"] == pytest.approx(1.3)


def test_running_median_follows_slow_drift_and_ignores_one_off_anchor_noise(monkeypatch):
    rng = random.Random(2)
    slow = [1.0 + 0.5 * ((i // 20) % 2) for i in range(400)]  # speed steps between 1.0 and 1.5 every 20 pairs
    fns_base = {"a": 10.0, "b": 20.0, "c": 35.0}
    clock = VirtualClock(slow, warmup_calls=4, calls_per_pair=4)
    monkeypatch.setattr(target_script, "time", clock)
    fns = {k: clock.work(b) for k, b in fns_base.items()}
    noisy_anchor = clock.work(2.0)

    def anchor() -> None:  # every 7th anchor call is hit by a one-off 3x hiccup
        noisy_anchor()
        if rng.random() < 1 / 7:
            clock.now += 2 * 2.0e-3
    out = target_script.measure_paired(fns, {"x": anchor}, anchors_stored_ms=2.0, rounds=9, repeats=3)
    comp = {k: out[k]["compensated_ms"] for k in fns}
    raw = {k: out[k]["value_ms"] for k in fns}
    err = max(abs(comp[k] / comp["a"] - fns_base[k] / 10.0) / (fns_base[k] / 10.0) for k in fns)
    raw_err = max(abs(raw[k] / raw["a"] - fns_base[k] / 10.0) / (fns_base[k] / 10.0) for k in fns)
    assert err < 0.02, comp
    assert raw_err > 0.1, raw  # the drift alone would have cost >10% on some ratio
