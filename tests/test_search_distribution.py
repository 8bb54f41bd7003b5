"""How decided P_theta is: the summary a search prints so a user can tell a real choice from a coin flip."""

from __future__ import annotations

import math

import pytest
import torch

from fbnas.search.dnas import format_result
from fbnas.search.history import NEAR_UNIFORM_ENTROPY, distribution_summary


def test_uniform_and_one_hot_extremes() -> None:
    uniform = distribution_summary([torch.full((9,), 1 / 9), torch.full((4,), 0.25)])
    assert uniform["normalized_entropy"] == pytest.approx([1.0, 1.0])
    assert uniform["max_prob"] == pytest.approx([1 / 9, 0.25])
    assert uniform["near_uniform"] is True
    one_hot = distribution_summary([torch.tensor([0.0, 1.0, 0.0]), torch.tensor([1.0, 0.0])])
    assert one_hot["mean_normalized_entropy"] == pytest.approx(0.0, abs=1e-9)
    assert one_hot["near_uniform"] is False


def test_entropy_matches_definition() -> None:
    p = torch.tensor([0.5, 0.3, 0.2])
    expected = -sum(float(x) * math.log(float(x)) for x in p) / math.log(3)
    out = distribution_summary([p])
    assert out["normalized_entropy"][0] == pytest.approx(expected)
    assert out["near_uniform"] is (expected > NEAR_UNIFORM_ENTROPY)


def _result(probs: list[list[float]]) -> dict:
    return {"sample": {f"s1.b{i}": "a" for i in range(len(probs))}, "choice_names": ["a"] * len(probs),
            "probs": probs, "latency_ms": 1.0, "macs": 1e6, "params": 1e5,
            "cost": {"kind": "latency", "unit": "ms", "value": 1.0},
            "distribution": distribution_summary([torch.tensor(p) for p in probs])}


def test_printed_result_warns_only_when_near_uniform() -> None:
    near = format_result(_result([[0.3, 0.35, 0.35]]))
    assert "close to uniform" in near and "(p 0.35, uniform 0.33)" in near
    decided = format_result(_result([[0.9, 0.05, 0.05]]))
    assert "close to uniform" not in decided
