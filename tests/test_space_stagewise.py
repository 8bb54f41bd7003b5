"""The stage-wise FBNetV3 spaces: the released FBNetV3 A-G are samples of ``fbnetv3`` (block by block, and their
MACs / params), the cost walk sums to the counted cost for every depth (the identity stand-ins of absent
blocks included), and bad definitions are one-line errors naming the field. Negative controls included."""

from __future__ import annotations

import pytest

from fbnas.arch.zoo import get_spec
from fbnas.cost.counting import count, placed_cost
from fbnas.errors import SpecError
from fbnas.nn.ops import resolve_op
from fbnas.space import StagewiseSpace, load_space, space_from_dict
from fbnas.space.stagewise import StagePlan


def _blocks(spec, drop=("dw_padding",)) -> list[tuple]:
    out = []
    for b in spec.expand():
        family, params = resolve_op(b.op, b.kwargs, spec.basic_args)
        params = {k: v for k, v in params.items() if k not in drop}
        out.append((family.name, b.in_channels, b.out_channels, b.stride, sorted(params.items())))
    return out


def zoo_sample(space: StagewiseSpace, name: str) -> dict:
    """The sample of ``space`` that describes the zoo model ``name`` (one mobile-vision row per stage)."""
    spec = get_spec(name)
    rows = [row for stage in spec.stages[1:-1] for row in stage]
    assert len(rows) == len(space.stages)
    sample = {"res": spec.input_size, "stem.c": spec.stages[0][0].out_channels}
    for plan, row in zip(space.stages, rows, strict=True):
        family, params = resolve_op(row.op, row.kwargs, spec.basic_args)
        assert family.name == "ir"
        sample.update({plan.k: params["k"], plan.e: params["e"], plan.n: row.repeats, plan.se: bool(params["se"])})
        if plan.c == f"s{plan.index}.c":
            sample[plan.c] = row.out_channels
        else:
            assert sample[plan.c] == row.out_channels  # c: same
    return sample


@pytest.mark.parametrize("name", [f"fbnet_v3_{x}" for x in "abcdefg"])
def test_released_fbnetv3_models_are_samples_of_the_space(name):
    space = load_space("fbnetv3")
    sample = zoo_sample(space, name)
    built = space.build(space.validate(sample)).arch
    zoo = get_spec(name)
    assert _blocks(built) == _blocks(zoo)
    assert built.head == zoo.head and built.input_size == zoo.input_size
    # the space leaves out the released models' dw padding quirk: equal counts once it is dropped
    plain = zoo.copy()
    for stage in plain.stages:
        for row in stage:
            row.kwargs.pop("dw_padding", None)
    a, b = count(built, num_classes=1000), count(plain, num_classes=1000)
    assert (a.macs, a.params) == (b.macs, b.params)
    if name == "fbnet_v3_d":  # no padding quirk: the released model itself
        z = count(zoo, num_classes=1000)
        assert (a.macs, a.params) == (z.macs, z.params)


def test_negative_control_a_changed_option_is_another_model():
    space = load_space("fbnetv3")
    sample = zoo_sample(space, "fbnet_v3_a")
    sample["s8.n"] = 4
    assert _blocks(space.build(sample).arch) != _blocks(get_spec("fbnet_v3_a"))


def _walk_macs(space, sample, num_classes=10) -> int:
    index = space.indices(sample)
    pos = {n: i for i, n in enumerate(space.dim_names)}
    return sum(placed_cost(t.blocks[tuple(index[pos[d]] for d in t.dims)])[0] for t in space.cost_terms(num_classes))


@pytest.mark.parametrize("name", ["fbnetv3_fmnist", "fbnetv3"])
def test_cost_walk_equals_count_at_every_depth(name):
    space = load_space(name)
    extremes = [{d.name: d.values[pick] for d in space.dims} for pick in (0, -1)]
    mixed = []
    for i in range(6):  # deepest stages next to shallowest ones
        s = space.sample(seed=7, step=i)
        for j, plan in enumerate(space.stages):
            values = space.dim(plan.n).values
            s[plan.n] = values[-1] if (i + j) % 2 else values[0]
        mixed.append(s)
    for s in extremes + mixed:
        assert _walk_macs(space, s) == count(space.build(s).arch, num_classes=10).macs
    assert len(space.term_dims()) == len(space.cost_terms(10))


class _DepthBlind(StagewiseSpace):
    """Negative control: a walk that forgets depth (every position always holds a block)."""

    def block_dims(self, plan: StagePlan, j: int) -> tuple[str, ...]:
        return tuple(d for d in super().block_dims(plan, j) if d != plan.n)


def test_negative_control_a_depth_blind_walk_is_wrong():
    space = load_space("fbnetv3_fmnist")
    blind = _DepthBlind(**{f: getattr(space, f) for f in StagewiseSpace.__dataclass_fields__})
    s = {d.name: d.values[-1] for d in space.dims}  # the deepest network
    assert _walk_macs(space, s) == count(space.build(s).arch, num_classes=10).macs
    assert _walk_macs(blind, s) != count(blind.build(s).arch, num_classes=10).macs


def test_dimensions_groups_and_build():
    space = load_space("fbnetv3_fmnist")
    assert space.dim_names[:2] == ["res", "stem.c"]
    assert space.groups()["s1"] == ["s1.k", "s1.e", "s1.c", "s1.n", "s1.se"]
    assert space.groups()["s2"] == ["s2.k", "s2.e", "s2.n", "s2.se"]  # c: same -> the width of s1
    s = space.default_sample()
    s.update({"res": 24, "s1.c": 48, "s2.n": 3, "s2.se": True})
    arch = space.build(s).arch
    assert arch.input_size == 24
    row = arch.stages[3][0]
    assert (row.op, row.out_channels, row.repeats, row.kwargs["se"]) == ("ir", 48, 3, "hsigmoid")
    macs = [count(space.build({d.name: d.values[p] for d in space.dims}).arch, num_classes=10).macs / 1e6
            for p in (0, -1)]
    assert macs[0] < 5 and macs[1] > 40  # the 15 and 23.2 MMAC caps of the config bind inside the space


BASE = {"kind": "stagewise", "input_size": 28, "in_channels": 1, "resolutions": [24, 28],
        "stem": {"c": [8], "s": 2}, "stages": [{"c": [8, 16], "n": [1, 2], "e": [1, 2], "k": [3, 5]}]}


@pytest.mark.parametrize("change, message", [
    ({"stages": [{"c": [8, 12], "n": 1, "e": 1, "k": 3}]}, "space.stages[0].c: channel options must be multiples"),
    ({"stages": [{"c": [8], "n": 1, "e": 1, "k": 4}]}, "space.stages[0].k: options must be odd"),
    ({"stages": [{"c": "same", "n": 1, "e": 1, "k": 3}]}, "space.stages[0].c: 'same' needs a stage before it"),
    ({"stages": [{"c": [8], "n": 1, "e": 1, "k": 3, "x": 1}]}, "space.stages[0].x: unknown field"),
    ({"stages": [{"c": [8], "n": [0], "e": 1, "k": 3}]}, "space.stages[0].n: options must be positive"),
    ({"resolutions": [32]}, "space.resolutions: must lie in [8, input_size 28]"),
    ({"last": {"c": 64, "e": 2}}, "space.last.e: only a pool head"),
])
def test_bad_definitions_are_one_line_errors(change, message):
    with pytest.raises(SpecError) as e:
        space_from_dict({**BASE, **change}, "my.yaml")
    assert str(e.value).startswith("my.yaml: ") and message in str(e.value) and "\n" not in str(e.value)


def test_stagewise_spaces_are_not_rescaled():
    with pytest.raises(SpecError, match="a stagewise space is not rescaled"):
        load_space("fbnetv3_fmnist", input_size=32)
