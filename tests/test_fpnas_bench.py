"""``fbnas bench fpnas --quick`` prints the documented keys, one entry per K, the child's MACs the largest of the
space."""

from __future__ import annotations

import json

from fbnas.cli import main


def test_bench_fpnas_quick_json(capsys):
    assert main(["bench", "fpnas", "--quick", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["k"] == [1, 2]
    for key in ("search_step_ms", "search_step_ms_per_arch", "search_peak_mb", "peak_ratio"):
        assert len(out[key]) == 2, key
    assert out["child_step_ms"] > 0 and out["search_step_ms"][1] > out["search_step_ms_per_arch"][1]
    from fbnas.cost.counting import count
    from fbnas.space import load_space

    space = load_space("fbnetv2_fpp_fmnist")
    largest = space.build(space.from_indices([k - 1 for k in space.num_choices()])).arch
    assert out["child_macs"] == count(largest, num_classes=10).macs >= max(
        count(space.build(space.sample(0, i)).arch, num_classes=10).macs for i in range(20))
