"""ArchSpec JSON/YAML round trips for every zoo model: dict, text and file, and the same net after the trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from fbnas.arch.spec import ArchSpec, BlockDef, load_spec
from fbnas.arch.zoo import get_spec, resolve_arch, zoo_names
from fbnas.cost.counting import count


def same_network(a: ArchSpec, b: ArchSpec) -> None:
    assert a.to_dict() == b.to_dict()
    assert a.expand() == b.expand()
    ra, rb = count(a, 96), count(b, 96)
    assert (ra.macs, ra.params, ra.params_total) == (rb.macs, rb.params, rb.params_total)


@pytest.mark.parametrize("name", zoo_names())
def test_dict_json_yaml_round_trip(name: str) -> None:
    spec = get_spec(name)
    same_network(spec, ArchSpec.from_dict(spec.to_dict()))
    same_network(spec, ArchSpec.from_dict(json.loads(spec.to_json())))
    same_network(spec, ArchSpec.from_dict(yaml.safe_load(spec.to_yaml())))
    # the dict is plain data (no tuples or numpy scalars sneaking into the files)
    assert json.loads(json.dumps(spec.to_dict())) == spec.to_dict()


@pytest.mark.parametrize("name", zoo_names())
def test_save_and_load_files(name: str, tmp_path: Path) -> None:
    spec = get_spec(name)
    for suffix in (".json", ".yaml", ".yml"):
        path = spec.save(tmp_path / f"{name}{suffix}")
        same_network(spec, load_spec(path))
        same_network(spec, resolve_arch(str(path)))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{name}{s}" for s in (".json", ".yaml", ".yml"))


def test_round_trip_keeps_every_field() -> None:
    spec = ArchSpec(
        stages=[[BlockDef("conv_k3_hs", 16, 2, 1)],
                [BlockDef("ir_k5_sehsig", 24, 2, 3, {"e": 4.5, "less_se_channels": True}),
                 BlockDef("ir_k3_g2", 24, 1, 1, {"e": 1, "pwl_groups": 2})],
                [BlockDef("ir_pool_hs", 64, 1, 1, {"e": 6})]],
        name="custom_net", input_size=40, in_channels=1,
        basic_args={"width_divisor": 4, "width_multiplier": 1.25, "act": "hswish"}, head={"dropout": 0.3})
    spec.validate()
    for text, parse in ((spec.to_json(), json.loads), (spec.to_yaml(), yaml.safe_load)):
        back = ArchSpec.from_dict(parse(text))
        same_network(spec, back)
        assert (back.name, back.input_size, back.in_channels) == ("custom_net", 40, 1)
        assert back.basic_args["width_multiplier"] == 1.25 and back.head["dropout"] == 0.3
        assert back.stages[1][0].kwargs == {"e": 4.5, "less_se_channels": True}
    # width multiplier and divisor really apply: 24 * 1.25 = 30 -> 32 at divisor 4
    assert [b.out_channels for b in spec.expand()][:2] == [20, 32]


def test_dict_rows_and_embedded_arch_are_accepted() -> None:
    rows = {"stages": [[{"op": "conv_k3", "c": 8, "s": 2}], [{"op": "ir_k3", "out_channels": 8, "n": 2,
                                                              "kwargs": {"e": 3}}]]}
    spec = ArchSpec.from_dict(rows)
    assert [(b.op, b.out_channels, b.stride) for b in spec.expand()] == [
        ("conv_k3", 8, 2), ("ir_k3", 8, 1), ("ir_k3", 8, 1)]
    # a search's result.json embeds the spec under "arch"
    same_network(spec, ArchSpec.from_dict({"arch": spec.to_dict()}))
