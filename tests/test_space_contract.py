"""Contract of every space: registered (``fbnas.space.space_names``), the recipe space and a joint space.

A sample survives a JSON round trip and validates; it builds an arch spec (and/or a recipe) that validates and
counts; its encoding has the declared size; Sobol and random samples are valid; and for architecture spaces
the cost walk (``cost_terms``) sums to exactly the analytic count of the built network. The negative controls
show each check can fail.
"""

from __future__ import annotations

import json
import math

import pytest

from fbnas.cost.counting import count, placed_cost
from fbnas.errors import SpecError
from fbnas.space import JointSpace, LayerwiseSpace, load_space, space_names
from fbnas.space.dims import Choice
from fbnas.train.recipe import Recipe, recipe_space


def _spaces() -> dict:
    out = {name: load_space(name) for name in space_names()}
    out["recipe"] = recipe_space()
    out["joint:fbnet_fmnist+recipe"] = JointSpace({"arch": load_space("fbnet_fmnist"), "recipe": recipe_space()})
    return out


SPACES = _spaces()


def walk_problems(space, sample: dict, num_classes: int = 10) -> list[str]:
    """What the cost walk gets wrong about the network ``sample`` builds (empty: nothing)."""
    arch = space.build(sample).arch
    index = space.indices(sample)
    pos = {n: i for i, n in enumerate(space.dim_names)}
    macs = sum(placed_cost(t.blocks[tuple(index[pos[d]] for d in t.dims)])[0] for t in space.cost_terms(num_classes))
    want = count(arch, num_classes=num_classes).macs
    return [] if macs == want else [f"cost walk {macs} MACs != counted {want}"]


def contract_problems(space, samples: list[dict]) -> list[str]:
    problems = []
    for s in samples:
        back = json.loads(json.dumps(s))
        if back != s or space.validate(back) != s:
            problems.append(f"sample {s} does not survive a JSON round trip")
            continue
        built = space.build(s)
        if built.arch is None and built.recipe is None:
            problems.append("build gives neither an architecture nor a recipe")
        if built.arch is not None:
            built.arch.validate("built")
            if count(built.arch, num_classes=10).macs <= 0:
                problems.append("built architecture has no MACs")
            if all(isinstance(d, Choice) for d in space.dims):
                problems += walk_problems(space, s)
            elif isinstance(space, JointSpace):
                prefix, part = space.arch_part()
                problems += walk_problems(part, space.split(s)[prefix])
        if built.recipe is not None:
            Recipe(**built.recipe)
        enc = space.encode(s)
        if len(enc) != space.encoding_size or not all(0.0 <= x <= 1.0 for x in enc):
            problems.append(f"encoding of size {len(enc)} (declared {space.encoding_size}) or outside [0, 1]")
    return problems


@pytest.mark.parametrize("name", sorted(SPACES))
def test_space_contract(name):
    space = SPACES[name]
    samples = [space.sample(seed=0, step=i) for i in range(4)] + space.sobol(4, seed=1)
    samples.append(space.default_sample())
    assert contract_problems(space, samples) == []
    if all(isinstance(d, Choice) for d in space.dims):
        s = samples[0]
        assert space.from_indices(space.indices(s)) == s


def test_every_shipped_space_is_covered():
    assert {"fbnet_v1", "fbnet_fmnist", "fbnetv2_fmnist"} <= set(space_names())


class _LastLayerLooksFixed(LayerwiseSpace):
    """Negative control: its walk claims the last searchable layer depends on no dimension."""

    def term_dims(self):
        dims = super().term_dims()
        last = max(i for i, d in enumerate(dims) if d)
        return dims[:last] + [()] + dims[last + 1:]


def test_negative_controls_fail():
    space = load_space("fbnet_fmnist")
    broken = _LastLayerLooksFixed(**{k: getattr(space, k) for k in
                                     ("name", "input_size", "in_channels", "basic_args", "head", "stages")})
    sample = space.from_indices([3] * space.num_layers)
    assert walk_problems(space, sample) == []
    assert walk_problems(broken, sample) != []
    tuple_sample = {**sample, "s1.b0": ("k3_e6",)}  # not a JSON scalar
    assert contract_problems(space, [tuple_sample]) != []
    with pytest.raises(SpecError):
        space.validate({**sample, "s1.b0": "k4_e6"})


def test_joint_space_of_fmnist_and_recipe_sobol_points_and_encodings():
    """The FBNetV3 joint space: fbnet_fmnist's 8 layers and the recipe (optimizer, log-scale lr, weight decay,
    mixup, dropout, drop path, EMA on/off): 64 Sobol points map to valid, distinct samples and encodings."""
    recipe = recipe_space(["optimizer", "lr", "weight_decay", "mixup_alpha", "dropout", "drop_path", "ema_decay"])
    joint = JointSpace({"arch": load_space("fbnet_fmnist"), "recipe": recipe})
    assert joint.dim_names[:2] == ["arch.s1.b0", "arch.s1.b1"] and "recipe.lr" in joint.dim_names
    assert joint.groups()["arch.s1.b0"] == ["arch.s1.b0"]
    points = joint.sobol(64, seed=0)
    assert len({json.dumps(p, sort_keys=True) for p in points}) == 64
    lr_dim = joint.dim("recipe.lr")
    for p in points:
        assert joint.validate(json.loads(json.dumps(p))) == p
        built = joint.build(p)
        assert built.arch is not None and Recipe(**built.recipe).lr == p["recipe.lr"]
        enc = joint.encode(p)
        assert len(enc) == 8 * 9 + 2 + 5 + 2  # one-hot layers and optimizer, five ranges, EMA off/on
        lr_at = joint.dim_names.index("recipe.lr")
        offset = sum(d.encoding_size for d in joint.dims[:lr_at])
        assert enc[offset] == pytest.approx(math.log(p["recipe.lr"] / lr_dim.low) / math.log(lr_dim.high / lr_dim.low))
    # the quasi-random points cover every option of every choice, and both halves of the log-lr range
    for d in joint.dims:
        if isinstance(d, Choice):
            assert {p[d.name] for p in points} == set(d.values), d.name
    mid = math.sqrt(lr_dim.low * lr_dim.high)
    below = sum(p["recipe.lr"] < mid for p in points)
    assert 24 <= below <= 40
    assert {p["recipe.ema_decay"] for p in points} == {0.0, 0.999}
