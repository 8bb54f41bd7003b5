"""Property-based fuzzing of every input fbnas reads: specs, layer-wise and masking spaces, search configs,
recipes, YAML files, IDX headers, latency-table rows and target results files. Each generated input is either
accepted or refused with one line (a FbnasError without a newline; through the CLI: exit 2, one stderr line, no
traceback, no output folder); any other exception fails the test.

``make test`` runs a few hundred examples (fixed seeds, ``COUNTS``); ``FBNAS_FUZZ_EXAMPLES=2000`` runs that many
per test with fresh random draws.
"""

from __future__ import annotations

import copy
import gzip
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from cli_contract import FAST_DNAS, assert_one_line_error, cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fbnas.errors import FbnasError

ENV_EXAMPLES = int(os.environ.get("FBNAS_FUZZ_EXAMPLES", "0") or 0)
COUNTS = {"spec": 120, "spec_cli": 25, "layerwise": 60, "masking": 50, "config": 80, "config_cli": 25,
          "recipe": 80, "yaml": 40, "idx": 60, "rows": 50, "results": 40}  # 630 examples in make test


def fuzz(name: str):
    return settings(max_examples=ENV_EXAMPLES or COUNTS[name], deadline=None, database=None,
                    derandomize=not ENV_EXAMPLES, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])


def refused_in_one_line(fn, *args, **kwargs) -> bool:
    """True when ``fn`` refused its input with a one-line FbnasError, False when it accepted it; anything else
    (another exception, a multi-line message) fails."""
    try:
        fn(*args, **kwargs)
    except FbnasError as e:
        msg = str(e)
        assert msg.strip() and "\n" not in msg, repr(msg)
        return True
    return False


# ---- generated values and mutations ----------------------------------------------------------------
KEYS = ["op", "c", "s", "n", "e", "k", "kwargs", "stride", "strid", "repeats", "out_channels", "input_size",
        "in_channels", "stages", "basic_args", "head", "dropout", "width_multiplier", "width_divisor", "act", "name",
        "fixed", "search", "candidates", "lr", "epochs", "warmup_epochs", "tau0", "subset", "seed", "se", "mid",
        "resolutions", "stem", "last", "path", "backend"]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 70), st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 0.5, 1.0, 6.0, 1e6, -1e-9, math.nan]),
    st.sampled_from(["", "relu", "hswish", "ir_k3", "skip", "conv_k3", "x", "fbnet_v1", "synthetic", "1e6", "nan"]),
    st.text(max_size=6))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=5) |
                      st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner, max_size=4), max_leaves=10)


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, (*prefix, i))


@st.composite
def mutated(draw, base):
    """``base`` with 1-4 random edits: a value replaced, a key dropped or added, a list entry dropped or added."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        paths = list(_paths(doc))
        path = draw(st.sampled_from(paths))
        parent = doc
        for p in path[:-1]:
            parent = parent[p]
        action = draw(st.sampled_from(["replace", "replace", "drop", "add"]))
        if not path:
            if action == "replace":
                doc = draw(VALUES)
            continue
        key = path[-1]
        if action == "replace":
            parent[key] = draw(VALUES)
        elif action == "drop":
            del parent[key]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS) | st.text(max_size=5))] = draw(VALUES)
        else:
            parent.insert(draw(st.integers(0, len(parent))), draw(VALUES))
    return doc


# ---- specs ---------------------------------------------------------------------------------------------
BASE_SPEC = {"name": "f", "input_size": 32, "in_channels": 3,
             "basic_args": {"width_divisor": 8, "width_multiplier": 1.0, "act": "relu"},
             "stages": [[["conv_k3", 16, 2, 1]], [["ir_k3", 16, 1, 2, {"e": 3}], {"op": "ir_k5", "c": 24, "s": 2}],
                        [["skip", 24, 1, 1], ["ghost_bneck", 32, 2, 1, {"k": 3, "mid": 48}]]],
             "head": {"dropout": 0.2, "drop_path": 0.0}}


def _spec_and_count(data):
    import torch

    from fbnas.arch.spec import ArchSpec
    from fbnas.cost.counting import count
    from fbnas.nn.model import build_model

    spec = ArchSpec.from_dict(data, "spec.json")
    report = count(spec, num_classes=10)  # an accepted spec can be costed ...
    if report.params < 2e6 and report.macs < 5e7:  # ... and, when small, built and run
        model = build_model(spec, 10).eval()
        with torch.no_grad():
            assert model(torch.randn(1, spec.in_channels, spec.input_size, spec.input_size)).shape == (1, 10)


PLAUSIBLE_KWARGS = {"k": [1, 3, 5, 7, 2], "e": [0.5, 1, 3, 6, 0.25], "se": [None, "sigmoid", "hsigmoid", 0.25],
                    "groups": [1, 2, 4, 3], "pw_groups": [1, 2], "pwl_groups": [1, 2], "mid": [None, 8, 16, 24, 12],
                    "act": ["relu", "hswish", "swish", "prelu", "identity"], "ratio": [2, 3], "dw_k": [3, 5],
                    "bias": [True, False], "dfc": [True, False], "r_lim": [3, 7, 9], "always_pw": [True, False],
                    "residual": [True, False], "n": [0, 1, 2], "reinf": [0, 3], "less_se_channels": [True, False],
                    "zero_last_bn_gamma": [True, False], "dw_padding": [None, 1], "order": ["last_first"]}


@st.composite
def plausible_specs(draw):
    """Specs of real ops with plausible parameters: mostly accepted, so building and running them is fuzzed too."""
    from fbnas.nn.ops import ALIASES, FAMILIES

    ops = sorted(ALIASES)
    stages = []
    for _ in range(draw(st.integers(1, 4))):
        rows = []
        for _ in range(draw(st.integers(1, 2))):
            op = draw(st.sampled_from(ops))
            params = FAMILIES[ALIASES[op][0]].params
            keys = draw(st.lists(st.sampled_from(sorted(set(params) & set(PLAUSIBLE_KWARGS)) or ["k"]),
                                 max_size=3, unique=True))
            kwargs = {k: draw(st.sampled_from(PLAUSIBLE_KWARGS[k])) for k in keys}
            rows.append([op, draw(st.sampled_from([4, 8, 12, 16, 24, 32])), draw(st.sampled_from([1, 2])),
                         draw(st.integers(1, 2)), kwargs])
        stages.append(rows)
    return {"name": "p", "input_size": draw(st.sampled_from([16, 24, 32])),
            "in_channels": draw(st.sampled_from([1, 3])),
            "basic_args": {"width_divisor": draw(st.sampled_from([1, 4, 8])), "act": "relu",
                           "width_multiplier": draw(st.sampled_from([0.5, 1.0, 1.5]))},
            "stages": stages, "head": {"dropout": 0.1}}


@fuzz("spec")
@given(st.one_of(mutated(BASE_SPEC), plausible_specs()))
def test_fuzzed_specs(data):
    refused_in_one_line(_spec_and_count, data)


@fuzz("spec_cli")
@given(data=mutated(BASE_SPEC))
def test_fuzzed_spec_files_through_the_cli(data, capsys):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "spec.json"
        path.write_text(json.dumps(data))
        rc, _, err = cli(["profile", path, "--format", "json"], capsys)
        if rc != 0:
            assert_one_line_error(rc, err)
        assert sorted(p.name for p in Path(d).iterdir()) == ["spec.json"]


# ---- spaces ---------------------------------------------------------------------------------------------
LAYERWISE = {"name": "f", "input_size": 16, "in_channels": 1, "basic_args": {"width_divisor": 8, "act": "relu"},
             "head": {"dropout": 0.1},
             "candidates": {"c": {"a": ["ir_k3", {"e": 1}], "b": ["ir_k5", {"e": 3}], "s": ["skip", {}]}},
             "stages": [{"fixed": ["conv_k3", 8, 2, 1]}, {"search": "c", "c": 8, "s": 1, "n": 2},
                        {"search": "c", "c": 16, "s": 2, "n": 1}]}


def _layerwise(data):
    from fbnas.space import space_from_dict

    space = space_from_dict(data, "space.yaml")
    space.build(space.sample(0, 0, 0))
    space.cost_terms(10)


@fuzz("layerwise")
@given(mutated(LAYERWISE))
def test_fuzzed_layerwise_spaces(data):
    refused_in_one_line(_layerwise, data)


def _masking(data):
    from fbnas.space.masking import parse_space

    space = parse_space(data, "space")
    space.build(space.sample(0, 0, 0))


def _masking_base() -> dict:
    from fbnas.search.dmasking import DMasking

    return copy.deepcopy(DMasking.smoke_config["space"])


@fuzz("masking")
@given(mutated(_masking_base()))
def test_fuzzed_masking_spaces(data):
    refused_in_one_line(_masking, data)


# ---- configs and recipes --------------------------------------------------------------------------------
def _config(data, space: bool = True):
    from fbnas.search.dnas import Dnas, DnasConfig

    cfg = DnasConfig.parse(data, "c.yaml")
    if space:
        Dnas().space(cfg)  # the space it names, scaled as it says


@fuzz("config")
@given(mutated(FAST_DNAS))
def test_fuzzed_search_configs(data):
    refused_in_one_line(_config, data)


@fuzz("config_cli")
@given(data=mutated(FAST_DNAS))
def test_fuzzed_search_configs_through_the_cli(data, capsys):
    try:
        text = yaml.safe_dump(data)
    except yaml.YAMLError:
        return
    if not refused_in_one_line(_config, yaml.safe_load(text), space=False):
        return  # a valid config would start a search: the library check above covers it
    with tempfile.TemporaryDirectory() as d:
        cfg, out = Path(d) / "c.yaml", Path(d) / "out"
        cfg.write_text(text)
        rc, _, err = cli(["search", "dnas", "--config", cfg, "--out", out], capsys)
        assert_one_line_error(rc, err)
        assert not out.exists()


RECIPE_FIELDS = ["optimizer", "lr", "momentum", "weight_decay", "lr_schedule", "warmup_epochs", "step_size", "gamma",
                 "label_smoothing", "mixup_alpha", "dropout", "drop_path", "ema_decay", "batch_size", "epochs",
                 "seed", "threads", "channels_last", "crop_padding", "hflip", "lrr", "epoch"]


@fuzz("recipe")
@given(st.dictionaries(st.sampled_from(RECIPE_FIELDS), SCALARS, max_size=6))
def test_fuzzed_recipes(data):
    from fbnas.train.recipe import Recipe, lr_factor

    if not refused_in_one_line(Recipe.from_dict, data, "recipe.yaml"):
        recipe = Recipe.from_dict(data)
        assert recipe.warmup_epochs == 0 or recipe.warmup_epochs < recipe.epochs
        assert all(math.isfinite(lr_factor(recipe, s, 7)) for s in (0, 3, 7 * recipe.epochs - 1))


@fuzz("yaml")
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                 mutated(FAST_DNAS).map(lambda d: yaml.safe_dump(d).encode())))
def test_fuzzed_yaml_files(raw):
    from fbnas.config import read_yaml_mapping

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.yaml"
        path.write_bytes(raw)
        refused_in_one_line(read_yaml_mapping, path)


# ---- IDX headers ----------------------------------------------------------------------------------------
@st.composite
def idx_files(draw):
    magic = draw(st.sampled_from([b"\x00\x00\x08\x03", b"\x00\x00\x08\x01", b"\x00\x00\x09\x03", b"\x00\x00\x08\x05"])
                 | st.binary(min_size=0, max_size=4))
    dims = draw(st.lists(st.integers(0, 40) | st.integers(0, 2**32 - 1), max_size=4))
    head = magic + b"".join(struct.pack(">I", x) for x in dims)
    n = 1
    for x in dims[:3]:
        n *= x
    size = draw(st.sampled_from([n, n - 1, n + 3, 0]) if n <= 40**3 else st.integers(0, 64))
    body = bytes(max(0, size))
    return gzip.compress(head + body) if draw(st.booleans()) else head + body


@fuzz("idx")
@given(idx_files(), st.booleans())
def test_fuzzed_idx_files(raw, as_dataset):
    from fbnas.data.datasets import IDX_IMAGES_MAGIC, load_dataset, read_idx

    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        (folder / "train-images-idx3-ubyte").write_bytes(raw)
        if not as_dataset:
            refused_in_one_line(read_idx, folder / "train-images-idx3-ubyte", IDX_IMAGES_MAGIC)
            return
        labels = struct.pack(">II", 0x801, 4) + bytes(4)
        (folder / "train-labels-idx1-ubyte").write_bytes(labels)
        if not refused_in_one_line(load_dataset, "fashion-mnist", folder, train=True):
            data = load_dataset("fashion-mnist", folder, train=True)
            assert len(data) == 4 and data.images.shape[-1] == data.images.shape[-2] > 0


# ---- latency-table rows and results files ---------------------------------------------------------------
ROW = {"key": "k", "value_ms": 1.5, "spread_ms": 0.1, "samples": 5, "block": {"kind": "block"}}


@fuzz("rows")
@given(st.lists(mutated(ROW), min_size=1, max_size=3))
def test_fuzzed_table_rows(rows):
    from fbnas.lut.store import LutStore

    with tempfile.TemporaryDirectory() as d:
        with LutStore(Path(d) / "t.lut", create=True) as store:
            if not refused_in_one_line(store.put, rows, "torch", 1, {"cpu": "fuzz"}):
                stored = store.rows()
                assert all(math.isfinite(r["value_ms"]) and r["value_ms"] > 0 for r in stored)
            else:
                assert store.count() == 0  # all or nothing


@fuzz("results")
@given(mutated({"format": "fbnas-lut-results/1", "fingerprint": {"cpu": "t", "backend": "onnxruntime",
                                                                 "statistic": "median"},
                "threads": 1, "results": [ROW]}))
def test_fuzzed_results_files(doc):
    from fbnas.lut.export import import_results

    with tempfile.TemporaryDirectory() as d:
        path, db = Path(d) / "r.json", Path(d) / "t.lut"
        path.write_text(json.dumps(doc))
        if refused_in_one_line(import_results, db, path):
            assert not db.exists()  # checked before the table is touched


# ---- a handful in real processes --------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["spec", "config", "idx"])
def test_fuzz_cases_in_a_real_process(case, tmp_path):
    if case == "spec":
        (tmp_path / "s.json").write_text(json.dumps({**BASE_SPEC, "basic_args": {"width_multiplier": math.inf}}))
        argv = ["profile", str(tmp_path / "s.json")]
    elif case == "config":
        (tmp_path / "c.yaml").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
        argv = ["search", "dnas", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "o")]
    else:
        (tmp_path / "train-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, 0, 28, 28))
        (tmp_path / "train-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, 0))
        argv = ["train", "--arch", "configs/fmnist_small.yaml", "--data-dir", str(tmp_path), "--epochs", "2",
                "--out", str(tmp_path / "o")]
    proc = subprocess.run([sys.executable, "-m", "fbnas.cli", *argv], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert_one_line_error(proc.returncode, proc.stderr)
    assert not (tmp_path / "o").exists()
