"""The config sections every search shares, as closed pydantic models (:mod:`fbnas.config`).

A strategy's config subclasses :class:`SearchConfig` and adds its ``space`` and ``supernet`` sections (and
its own defaults). Field comments say what a field means; ``docs/dnas.md`` and ``docs/dmasking.md`` say how
the searches use them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from fbnas.config import StrictModel
from fbnas.search.loss import LossConfig

PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]


class DataSection(StrictModel):
    name: str = "fashion-mnist"  # fashion-mnist | cifar10 | imagefolder | synthetic (tests)
    dir: str | None = None  # dataset folder (default: $FBNAS_DATA or the system copy)
    subset: Annotated[int, Field(ge=10)] | None = None  # training images the search uses (None: all)
    theta_split: Annotated[float, Field(gt=0.0, le=0.9)] = 0.2  # share of them that trains the architecture
    batch_size: PositiveInt = 128
    augment: bool = False  # random crop and flip on the weight split
    channels_last: bool = True  # channels_last memory format (faster depthwise convs on CPU)


class ScheduleSection(StrictModel):
    epochs: PositiveInt = 90
    warmup_epochs: NonNegativeInt = 10  # epochs that train only the weights
    tau0: Annotated[float, Field(gt=0.0)] = 5.0  # Gumbel temperature of the first architecture epoch
    tau_decay: Annotated[float, Field(ge=0.0)] = 0.045  # tau = tau0 * exp(-tau_decay * architecture epoch)

    @model_validator(mode="after")
    def _warmup_leaves_search_epochs(self) -> ScheduleSection:
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs: must be < schedule.epochs ({self.epochs}) so theta trains at all, "
                             f"got {self.warmup_epochs}")
        return self


class WeightsOptimizer(StrictModel):
    """SGD with a cosine schedule from ``lr`` to ``min_lr`` over the whole search."""

    lr: Annotated[float, Field(gt=0.0)] = 0.1
    momentum: Annotated[float, Field(ge=0.0, le=1.0)] = 0.9
    weight_decay: Annotated[float, Field(ge=0.0)] = 1e-4
    nesterov: bool = False
    min_lr: Annotated[float, Field(ge=0.0)] = 0.0


class ThetaOptimizer(StrictModel):
    """Adam on the architecture parameters."""

    lr: Annotated[float, Field(gt=0.0)] = 0.01
    weight_decay: Annotated[float, Field(ge=0.0)] = 5e-4


class LutSection(StrictModel):
    path: str | None = None  # latency table (SQLite) for loss.cost latency
    backend: str = "torch"  # torch | onnxruntime
    dtype: Literal["float32", "int8"] = "float32"  # int8: the search optimises int8 latency (needs onnxruntime)
    threads: PositiveInt = 1  # threads the table was (or is) measured with
    build: bool = True  # measure the entries the space needs and the table lacks, first
    # use the rows of another device (its 8-digit fingerprint or full name, as `fbnas lut show` lists them)
    # instead of this machine's; recorded in result.json (lut.allowed_fingerprint)
    allow_fingerprint: str | None = None


class ResultSection(StrictModel):
    samples: Annotated[int, Field(ge=0)] = 6  # architectures sampled from the learned distribution


PositiveFloat = Annotated[float, Field(gt=0.0)]


class Constraints(StrictModel):
    """Hard caps on the found and the sampled architectures (each an upper bound; None: no cap)."""

    latency_ms: PositiveFloat | None = None  # latency-table ms (needs lut.path)
    macs: PositiveFloat | None = None  # millions of multiply-adds, counted analytically
    params: PositiveFloat | None = None  # millions of conv/linear weights

    def active(self) -> dict[str, float]:
        return {k: v for k, v in self.to_dict().items() if v is not None}


class RetrainSection(StrictModel):
    """How ``fbnas run`` retrains the found architecture, the sampled ones and the baseline (one recipe)."""

    epochs: PositiveInt = 10
    recipe: dict[str, Any] = {}  # fbnas.train.Recipe fields over the default recipe
    limit_train: PositiveInt | None = None  # train on the first N training images (None: all)
    samples: NonNegativeInt = 0  # also retrain this many architectures sampled from the learned distribution

    @model_validator(mode="after")
    def _valid_recipe(self) -> RetrainSection:
        from fbnas.train.recipe import Recipe, RecipeError

        try:  # the recipe the retraining uses: its epochs are this section's
            Recipe.from_dict({**self.recipe, "epochs": self.epochs}, "recipe")
        except RecipeError as e:
            raise ValueError(str(e)) from None
        return self


class BaselineSection(StrictModel):
    """The random baseline of ``fbnas run``: architectures of the searched space with the found one's cost."""

    num: NonNegativeInt = 5  # random architectures trained like the found one
    tolerance: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.05  # relative window around the found one's cost
    seed: NonNegativeInt = 0  # of the random draws


class PipelineSection(StrictModel):
    """What ``fbnas run`` does after the search (``fbnas search`` ignores this section)."""

    retrain: RetrainSection = RetrainSection()
    baseline: BaselineSection = BaselineSection()
    latency_rounds: PositiveInt = 15  # interleaved timing rounds of every trained network


class SearchConfig(StrictModel):
    seed: Annotated[int, Field(ge=0)] = 0
    threads: PositiveInt | None = None  # torch threads (None: leave torch's default)
    data: DataSection = DataSection()
    schedule: ScheduleSection = ScheduleSection()
    weights_optimizer: WeightsOptimizer = WeightsOptimizer()
    theta_optimizer: ThetaOptimizer = ThetaOptimizer()
    loss: LossConfig = LossConfig()
    lut: LutSection = LutSection()
    result: ResultSection = ResultSection()
    constraints: Constraints = Constraints()
    pipeline: PipelineSection = PipelineSection()

    @model_validator(mode="after")
    def _latency_needs_a_table(self) -> SearchConfig:
        if self.loss.cost == "latency" and not self.lut.path:
            raise ValueError("lut.path: loss.cost 'latency' needs a latency table path (or use loss.cost macs/params)")
        if self.constraints.latency_ms is not None and not self.lut.path:
            raise ValueError("lut.path: constraints.latency_ms needs a latency table path")
        if self.lut.dtype == "int8" and self.lut.backend != "onnxruntime":
            raise ValueError("lut.dtype: int8 latency is measured in onnxruntime; set lut.backend: onnxruntime")
        return self


SupernetMode = Literal["soft", "hard"]
