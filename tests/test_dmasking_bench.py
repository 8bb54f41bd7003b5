"""``fbnas bench dmasking --quick`` prints the documented keys, lists aligned with the options."""

from __future__ import annotations

import json

from fbnas.bench.dmasking import option_widths
from fbnas.cli import main


def test_option_widths_share_the_largest_width():
    assert option_widths(64, 2) == [32, 64]
    assert option_widths(64, 32) == list(range(2, 65, 2))


def test_bench_quick_json(capsys):
    assert main(["bench", "dmasking", "--quick", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("options", "mask_peak_mb", "mask_step_ms", "naive_peak_mb", "naive_step_ms"):
        assert key in out
    n = len(out["options"])
    assert n >= 2 and all(len(out[k]) == n for k in ("mask_peak_mb", "mask_step_ms", "naive_peak_mb",
                                                      "naive_step_ms"))
    assert all(v > 0 for v in out["mask_step_ms"] + out["naive_step_ms"])
