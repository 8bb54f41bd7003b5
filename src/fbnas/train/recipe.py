"""The training recipe: a closed pydantic model whose field metadata both validates a recipe and defines the
recipe search space of FBNetV3 (seed 000, "FBNet V3": the architecture and the training recipe are searched
together).

Every field carries a :class:`RecipeField`: its valid domain (the bounds, or the allowed values) and, for
the searchable fields, the dimension a search draws it from by default (a narrower range, a log scale,
EMA as off/on). :func:`recipe_space` turns those into a space of named dimensions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import model_validator

from fbnas.config import StrictModel
from fbnas.errors import FbnasError
from fbnas.space.base import Built, DimSpace, Sample
from fbnas.space.dims import Choice, Dim, Range


class RecipeError(FbnasError):
    """A recipe field has a bad value; the message names the field and the valid range."""


OPTIMIZERS = ("sgd", "rmsprop", "adamw")
LR_SCHEDULES = ("cosine", "step")


@dataclass(frozen=True)
class RecipeField:
    """A recipe field's domain (``low``/``high`` bounds, open where flagged, or ``values``) and its default
    search dimension (``search``; None: not searched)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    values: tuple[Any, ...] = ()
    search: Dim | None = None

    def check(self, name: str, v: Any) -> None:
        """ValueError naming the field (pydantic adds where the recipe sits) when ``v`` is outside the domain."""
        if v is None:
            return
        if self.values:
            if v not in self.values:
                raise ValueError(f"{name}: must be one of {', '.join(map(str, self.values))}, got {v!r}")
            return
        lo = -math.inf if self.low is None else self.low
        hi = math.inf if self.high is None else self.high
        if v < lo or v > hi or (self.low_open and v == lo) or (self.high_open and v == hi):
            lb, rb = "(" if self.low_open else "[", ")" if self.high_open else "]"
            raise ValueError(f"{name}: must be in {lb}{lo:g}, {hi:g}{rb}, got {v!r}")

    def contains(self, d: Dim) -> bool:
        """Whether every value dimension ``d`` can produce lies in the domain."""
        candidates = d.values if isinstance(d, Choice) else (d.low, d.high)
        try:
            for v in candidates:
                self.check("x", v)
        except ValueError:
            return False
        return True


def _f(**kw: Any) -> RecipeField:
    return RecipeField(**kw)


class Recipe(StrictModel):
    """Hyper-parameters of one training run. Defaults are the small Fashion-MNIST recipe (10 epochs).

    Augmentation is off by default: in 10-epoch runs crop+flip cost accuracy; longer runs and CIFAR-10 want
    ``crop_padding`` 2-4 and ``hflip``.

    ``lr`` is for ``batch_size``; ``momentum`` is beta1 for adamw. ``dropout=None`` keeps the spec's head dropout.
    ``warmup_epochs`` ramps the lr linearly from 0 (it must end before ``epochs`` does); the cosine schedule
    then decays per step to 0.
    ``step`` multiplies the lr by ``gamma`` every ``step_size`` epochs. ``ema_decay`` 0 turns EMA off.
    ``threads`` 0 keeps torch's default. Bit-exact resume needs the same ``threads``.
    """

    error_class = RecipeError

    optimizer: Annotated[str, _f(values=OPTIMIZERS, search=Choice("optimizer", ("sgd", "rmsprop")))] = "sgd"
    lr: Annotated[float, _f(low=0, high=100, low_open=True, search=Range("lr", 0.01, 1.0, log=True))] = 0.4
    momentum: Annotated[float, _f(low=0, high=1, high_open=True)] = 0.9
    weight_decay: Annotated[float, _f(low=0, high=1, search=Range("weight_decay", 1e-6, 1e-3, log=True))] = 5e-4
    lr_schedule: Annotated[str, _f(values=LR_SCHEDULES)] = "cosine"
    warmup_epochs: Annotated[float, _f(low=0, high=1e6)] = 1.0
    step_size: Annotated[int, _f(low=1, high=1e9)] = 3
    gamma: Annotated[float, _f(low=0, high=1, low_open=True)] = 0.1
    label_smoothing: Annotated[float, _f(low=0, high=1, high_open=True,
                                         search=Range("label_smoothing", 0.0, 0.2))] = 0.1
    mixup_alpha: Annotated[float, _f(low=0, high=100, search=Range("mixup_alpha", 0.0, 0.4))] = 0.0
    dropout: Annotated[float | None, _f(low=0, high=1, high_open=True, search=Range("dropout", 0.0, 0.3))] = None
    drop_path: Annotated[float, _f(low=0, high=1, high_open=True, search=Range("drop_path", 0.0, 0.2))] = 0.0
    ema_decay: Annotated[float, _f(low=0, high=1, high_open=True,
                                   search=Choice("ema_decay", (0.0, 0.999), ("off", "on")))] = 0.0
    batch_size: Annotated[int, _f(low=1, high=1 << 20)] = 512
    epochs: Annotated[int, _f(low=1, high=1e6)] = 10
    seed: Annotated[int, _f(low=0, high=2**63 - 1)] = 0
    threads: Annotated[int, _f(low=0, high=1024)] = 0
    channels_last: bool = True
    crop_padding: Annotated[int, _f(low=0, high=64)] = 0
    hflip: bool = False

    @model_validator(mode="after")
    def _check_domains(self) -> Recipe:
        for name, meta in recipe_fields().items():
            meta.check(name, getattr(self, name))
        if 0 < self.warmup_epochs and self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs: must be < epochs ({self.epochs}) when > 0, so the lr reaches its peak "
                             f"before the run ends (pass warmup_epochs 0 for no warm-up), got {self.warmup_epochs:g}")
        return self

    # ---- serialization -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, source: str = "recipe") -> Recipe:
        return cls.parse(data, source)

    @classmethod
    def load(cls, path: str | Path) -> Recipe:
        """Load from YAML/JSON; a file with a top-level ``recipe:`` mapping is accepted too."""
        from fbnas.config import read_yaml_mapping

        try:
            data = read_yaml_mapping(path)
        except RecipeError:
            raise
        except FbnasError as e:
            raise RecipeError(str(e)) from None
        if isinstance(data.get("recipe"), dict):
            data = data["recipe"]
        return cls.from_dict(data, source=str(path))


def searched_recipe(arch: str | Path | None) -> Recipe | None:
    """The recipe a search found with its architecture: ``recipe`` of a search's result.json (the file, or the
    run folder holding it) when it has one beside its ``arch`` spec (FBNetV3 JointNAS); None otherwise."""
    import json

    if arch is None:
        return None
    p = Path(str(arch))
    if p.is_dir():
        p = p / "result.json"
    if p.suffix != ".json" or not p.is_file():
        return None
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # not ours to judge here: the arch loader reports a bad file
    if not (isinstance(data, dict) and isinstance(data.get("arch"), dict) and isinstance(data.get("recipe"), dict)):
        return None
    return Recipe.from_dict(data["recipe"], f"{p}: recipe")


def recipe_fields() -> dict[str, RecipeField]:
    """Field name -> its :class:`RecipeField` metadata."""
    out = {}
    for name, info in Recipe.model_fields.items():
        meta = next((m for m in info.metadata if isinstance(m, RecipeField)), None)
        if meta is not None:
            out[name] = meta
    return out


def searchable_fields() -> list[str]:
    return [n for n, m in recipe_fields().items() if m.search is not None]


@dataclass
class RecipeSpace(DimSpace):
    """Recipe fields as dimensions; ``build`` gives the sampled fields (to apply on a base recipe)."""

    fields: list[Dim]
    name: str = "recipe"

    @property
    def dims(self) -> list[Dim]:  # type: ignore[override]
        return list(self.fields)

    def build(self, sample: Sample) -> Built:
        return Built(recipe=self.validate(sample))


def recipe_space(fields: list[str] | None = None, overrides: dict[str, Dim] | None = None) -> RecipeSpace:
    """The space of ``fields`` (default: every searchable one) with their default dimensions, replaced by
    ``overrides[name]`` where given; a dimension must stay inside the field's domain."""
    meta = recipe_fields()
    names = searchable_fields() if fields is None else list(fields)
    overrides = overrides or {}
    dims: list[Dim] = []
    for name in names:
        if name not in meta:
            raise RecipeError(f"recipe space: unknown field {name!r}; valid: {', '.join(sorted(meta))}")
        d = overrides.get(name, meta[name].search)
        if d is None:
            raise RecipeError(f"recipe space: field {name!r} has no default search range; give one")
        if d.name != name or not meta[name].contains(d):
            raise RecipeError(f"recipe space: dimension for {name!r} must be named {name!r} and stay inside the "
                              "field's valid values")
        dims.append(d)
    space = RecipeSpace(dims)
    space.check_dim_names()
    return space


def lr_factor(recipe: Recipe, step: int, steps_per_epoch: int) -> float:
    """Multiplier of ``recipe.lr`` at optimizer step ``step`` (0-based): linear warmup, then cosine or step."""
    total = max(1, recipe.epochs * steps_per_epoch)
    warm = int(round(recipe.warmup_epochs * steps_per_epoch))
    if step < warm:
        return (step + 1) / (warm + 1)
    if recipe.lr_schedule == "cosine":
        return cosine_factor(step - warm, total - warm)
    return recipe.gamma ** (step // (recipe.step_size * steps_per_epoch))


def cosine_factor(step: int, total: int, min_factor: float = 0.0) -> float:
    """Cosine decay from 1 to ``min_factor`` over ``total`` steps (SGDR without restarts); the one lr shape of
    training and of the searches' weight optimizer."""
    t = min(1.0, step / max(1, total))
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * t))
