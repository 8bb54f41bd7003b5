"""Behaviour preserved across the space-model rebuild (issue 17): the small presets of both shipped searches (DNAS:
``paper``, what ``quick`` was when the record was taken; DMasking: ``quick``), run on a 1024-image Fashion-MNIST
subset at 1 thread, find the architectures and probabilities recorded (``tests/data/regression_quick_presets.json``),
and the space walks give the recorded LUT keys and cost rows. A search's record holds one result per CPU seen
(Intel Xeon with AVX-512; AMD EPYC with AVX2 only): float kernels differ by instruction set, and so does the
searched architecture.

Latency comes from a synthetic table (every block's ms is a fixed function of its analytic MACs), so the result
does not depend on this machine's speed. ``FBNAS_RECORD_REGRESSION=1`` adds this CPU's result where it is new;
for an intended change of behaviour, delete the old results first.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from fbnas.cli import main

DATA = Path(__file__).parent / "data" / "regression_quick_presets.json"
RECORD = os.environ.get("FBNAS_RECORD_REGRESSION") == "1"
SUBSET = ["--set", "data.subset=1024", "--set", "threads=1"]


def _synthetic_ms(desc: dict) -> float:
    """A deterministic 'latency' from the entry's MACs: 0.01 ms + 0.05 ms per MMAC."""
    from fbnas.cost.formulas import total
    from fbnas.nn.ops import get_family

    if desc["kind"] == "classifier":
        macs = desc["cin"] * desc["cout"]
    else:
        shapes, _, _ = get_family(desc["family"]).shapes(desc["cin"], desc["cout"], desc["stride"], desc["h"],
                                                        desc["w"], desc["build_params"])
        macs = total(shapes)[0]
    return 0.01 + 0.05 * macs / 1e6


def _synthetic_lut(path: Path, space) -> None:
    from fbnas.lut import needed_entries
    from fbnas.lut.measure import fingerprint
    from fbnas.lut.store import LutStore

    entries = needed_entries(space, num_classes=10)
    with LutStore(path, create=True) as store:  # stored as this machine's rows: a search uses no other device's
        store.put(({"key": e.key, "value_ms": _synthetic_ms(e.desc), "spread_ms": 0.0, "samples": 1,
                    "block": e.desc} for e in entries), "torch", 1, {**fingerprint("torch", 1, "cpu_median_cold"),
                                                                 "synthetic": True}, "cpu_median_cold")


def _fmnist_space(width: float = 1.0):
    from fbnas.space import load_space

    return load_space("fbnet_fmnist", input_size=28, in_channels=1, width_multiplier=width)


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _walks() -> dict:
    """What the space walk gives: LUT keys per searchable layer and of the fixed blocks, analytic cost rows."""
    from fbnas.cost.terms import analytic_cost_model
    from fbnas.lut.signature import placed_entry
    from fbnas.space import load_space

    out = {}
    for name, space in (("fbnet_fmnist", _fmnist_space()),
                        ("fbnet_v1_224", load_space("fbnet_v1", input_size=224))):
        terms = space.cost_terms(10)
        per_layer = [[placed_entry(p) for p in space.blocks_of(d, 10)] for d in space.dim_names]
        fixed = [placed_entry(t.blocks[()]) for t in terms if not t.dims]
        cm = {kind: analytic_cost_model(space, kind, 10) for kind in ("macs", "params")}
        out[name] = {
            "layer_keys": _digest([[e.key for e in layer] for layer in per_layer]),
            "fixed_keys": _digest([e.key for e in fixed]),
            "macs_rows": [[round(float(v), 9) for v in table] for _, table in cm["macs"].terms],
            "macs_fixed": round(cm["macs"].fixed, 9),
            "params_fixed": round(cm["params"].fixed, 9),
            "params_rows_digest": _digest([[round(float(v), 9) for v in table] for _, table in cm["params"].terms]),
        }
    return out


def _search(strategy: str, config: str, out: Path, extra: list[str], capsys) -> dict:
    preset = "paper" if strategy == "dnas" else "quick"  # dnas: the preset the record was taken with
    rc = main(["search", strategy, "--config", config, "--preset", preset, "--out", str(out), *SUBSET, *extra])
    capsys.readouterr()
    assert rc == 0
    res = json.loads((out / "result.json").read_text())
    return {"choice_names": res["choice_names"], "probs": res["probs"], "macs": res["macs"]}


def _matches(got: dict, want: dict) -> bool:
    return (got["choice_names"] == want["choice_names"] and got["macs"] == want["macs"]
            and len(got["probs"]) == len(want["probs"])
            and all(p_got == pytest.approx(p_want, abs=2e-4)
                    for p_got, p_want in zip(got["probs"], want["probs"], strict=True)))


def _check_or_record(key: str, got: dict) -> None:
    """The search's result must equal one of the recorded ones: one per CPU whose float kernels were seen (a
    training run is bit-exact on one CPU, but oneDNN / MKL pick other kernels on other instruction sets, and a
    Gumbel search diverges from a last-bit difference). A change of behaviour changes the result on every CPU."""
    recorded = json.loads(DATA.read_text()) if DATA.exists() else {}
    variants = recorded.get(key, [])
    if RECORD:
        if not any(_matches(got, v) for v in variants):
            recorded[key] = [*variants, got]
            DATA.write_text(json.dumps(recorded, indent=1) + "\n")
        return
    assert variants, f"no record of {key}"
    assert any(_matches(got, v) for v in variants), (
        f"{key}: {got['choice_names']} ({got['macs']} MACs) is none of the {len(variants)} recorded results "
        f"({[v['choice_names'] for v in variants]}); a new CPU's kernels: FBNAS_RECORD_REGRESSION=1 adds its result")


def test_space_walks_match_recorded():
    got = _walks()
    if RECORD:
        recorded = json.loads(DATA.read_text()) if DATA.exists() else {}
        recorded["walks"] = got
        DATA.write_text(json.dumps(recorded, indent=1) + "\n")
        return
    want = json.loads(DATA.read_text())["walks"]
    for name in want:
        assert got[name]["layer_keys"] == want[name]["layer_keys"], name
        assert got[name]["fixed_keys"] == want[name]["fixed_keys"], name
        flat = [v for row in want[name]["macs_rows"] for v in row]
        assert [v for row in got[name]["macs_rows"] for v in row] == pytest.approx(flat), name
        assert got[name]["macs_fixed"] == pytest.approx(want[name]["macs_fixed"]), name
        assert got[name]["params_fixed"] == pytest.approx(want[name]["params_fixed"]), name
        assert got[name]["params_rows_digest"] == want[name]["params_rows_digest"], name


def test_dnas_quick_preset_matches_recorded(tmp_path, capsys):
    lut = tmp_path / "synthetic.sqlite"
    _synthetic_lut(lut, _fmnist_space())
    got = _search("dnas", "configs/dnas_fashion_mnist.yaml", tmp_path / "dnas",
                  ["--set", f"lut.path={lut}", "--set", "lut.build=false"], capsys)
    _check_or_record("dnas_quick", got)


def test_dmasking_quick_preset_matches_recorded(tmp_path, capsys):
    got = _search("dmasking", "configs/dmasking_fashion_mnist.yaml", tmp_path / "dmasking", [], capsys)
    _check_or_record("dmasking_quick", got)


def test_a_changed_result_matches_no_record():
    """Negative control of the comparison: one changed choice, or probabilities moved by 1e-3, match nothing."""
    for key in ("dnas_quick", "dmasking_quick"):
        for v in json.loads(DATA.read_text())[key]:
            assert _matches(v, v)
            changed = {**v, "choice_names": ["skip", *v["choice_names"][1:]]}
            if changed["choice_names"] == v["choice_names"]:
                changed["choice_names"] = ["k3_e1", *v["choice_names"][1:]]
            assert not _matches(changed, v)
            moved = {**v, "probs": [[p + 1e-3 for p in row] for row in v["probs"]]}
            assert not _matches(moved, v)
