"""A range encoded per option of a choice (``Range.encode_per``): the predictor's input for a number whose meaning
depends on a choice, e.g. the learning rate of SGD vs RMSProp."""

from __future__ import annotations

import math

import pytest

from fbnas.errors import SpecError
from fbnas.space.dims import Choice, Range
from fbnas.train.recipe import recipe_space


def _space(encode_per: str = "optimizer"):
    return recipe_space(["optimizer", "lr", "dropout"], {
        "optimizer": Choice("optimizer", ("sgd", "rmsprop")),
        "lr": Range("lr", 0.01, 1.0, log=True, encode_per=encode_per)})


def test_the_value_goes_in_the_chosen_options_slot():
    space = _space()
    assert space.encoding_size == 2 + 2 + 1
    pos = math.log(0.1 / 0.01) / math.log(1.0 / 0.01)  # 0.5: the log-scale position, by hand
    lr = space.encode({"optimizer": "rmsprop", "lr": 0.1, "dropout": 0.2})
    assert lr[:2] == [0.0, 1.0] and lr[2] == 0.0 and lr[3] == pytest.approx(pos)
    sgd = space.encode({"optimizer": "sgd", "lr": 0.1, "dropout": 0.2})
    assert sgd[:2] == [1.0, 0.0] and sgd[2] == pytest.approx(pos) and sgd[3] == 0.0
    assert sgd[4] == lr[4]  # the other dimensions encode as before


def test_without_encode_per_one_shared_slot():  # control: the same space encodes lr in one slot
    space = _space("")
    assert space.encoding_size == 4
    a = space.encode({"optimizer": "rmsprop", "lr": 0.1, "dropout": 0.2})
    b = space.encode({"optimizer": "sgd", "lr": 0.1, "dropout": 0.2})
    assert a[2] == b[2] == pytest.approx(0.5)


def test_sampling_is_unchanged_by_encode_per():
    assert [_space().sample(3, i) for i in range(5)] == [_space("").sample(3, i) for i in range(5)]


def test_encode_per_must_name_a_choice_of_the_space():
    with pytest.raises(SpecError, match="'lr': encode_per 'dropout' is not a choice"):
        _space("dropout").encoding_size  # noqa: B018
    with pytest.raises(SpecError, match="encode_per 'momentum' is not a choice"):
        _space("momentum").encode({"optimizer": "sgd", "lr": 0.1, "dropout": 0.2})


def test_a_joint_space_keeps_the_link_under_its_prefixes():
    from fbnas.space import JointSpace

    joint = JointSpace({"recipe": _space()})
    assert joint.dim("recipe.lr").encode_per == "recipe.optimizer"
    sample = {"recipe.optimizer": "rmsprop", "recipe.lr": 0.1, "recipe.dropout": 0.2}
    assert joint.encode(sample) == _space().encode({"optimizer": "rmsprop", "lr": 0.1, "dropout": 0.2})
