"""The config of FBNetV3's JointNAS (seed 000, "FBNet V3"): ``jointnas:`` beside the sections every search
shares (:class:`fbnas.search.config.SearchConfig`: seed, threads, data, constraints, lut).

The seed states the Huber loss, the frozen-then-end-to-end predictor training (50 + 50 epochs), the 0.92 rank
correlation of the early-stopping epoch and the reuse of the predictor across constraints; every other
constant (pool, batch, iterations, widths, GA sizes, recipe ranges, proxy size) is ours, with the defaults
below (``docs/jointnas.md`` says why). Of the shared sections JointNAS reads ``seed``, ``threads``,
``data.name`` / ``data.dir`` / ``data.channels_last``, ``constraints`` and ``lut``; the supernet sections
(schedule, optimizers, loss, result) do not apply.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from fbnas.config import StrictModel
from fbnas.search.config import SearchConfig
from fbnas.search.loss import LossConfig

PositiveInt = Annotated[int, Field(ge=1)]
Unit = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveFloat = Annotated[float, Field(gt=0.0)]

DEFAULT_RECIPE_FIELDS = ["optimizer", "lr", "weight_decay", "mixup_alpha", "dropout", "drop_path", "label_smoothing",
                         "ema_decay"]


def recipe_fields(v: dict[str, Any], set_by: str) -> dict[str, Any]:
    """``v`` if it is valid Recipe fields without the run-specific ones (``set_by`` sets those)."""
    from fbnas.train.recipe import Recipe, RecipeError

    bad = sorted(set(v) & {"epochs", "seed", "threads"})
    if bad:
        raise ValueError(f"{bad[0]}: set by {set_by}")
    try:
        Recipe.from_dict(v, "recipe")
    except RecipeError as e:
        raise ValueError(str(e).removeprefix("recipe: ")) from None
    return v


class DimOverride(StrictModel):
    """A recipe field's search dimension: a range (``low``, ``high``, ``log``) or a choice (``values``)."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    values: list[Any] | None = None
    labels: list[str] | None = None
    encode_per: str | None = None  # a range: encoded once per option of this searched choice (the predictor's input)

    @model_validator(mode="after")
    def _range_or_choice(self) -> DimOverride:
        if (self.values is None) == (self.low is None or self.high is None):
            raise ValueError("low: a dimension is a range (low and high) or a choice (values), not both or neither")
        if self.encode_per is not None and self.values is not None:
            raise ValueError("encode_per: only a range is encoded per option of a choice")
        return self


class SpaceSection(StrictModel):
    arch: str | dict[str, Any] = "fbnetv3_fmnist"  # a shipped space (fbnetv3_fmnist, fbnetv3), a YAML file or the
    # space's mapping inline (kind: stagewise, ...: docs/spaces.md)
    recipe: list[str] = DEFAULT_RECIPE_FIELDS  # searched Recipe fields (their default dimensions: docs/spaces.md)
    ranges: dict[str, DimOverride] = {}  # field -> its dimension instead of the default one


class ProxySection(StrictModel):
    """How a candidate is trained in the coarse stage (FBNetV3's proxy: a subset, early-stopped)."""

    train_images: Annotated[int, Field(ge=10)] = 4000  # drawn from the training set by the seed
    val_images: Annotated[int, Field(ge=10)] = 2000  # held out of the training set: the measured accuracy
    epochs: PositiveInt = 4  # the full proxy budget (what calibration trains; the lr schedule's length)
    bn_images: Annotated[int, Field(ge=0)] = 512  # BN statistics recomputed on these before each evaluation
    recipe: dict[str, Any] = {"batch_size": 64, "warmup_epochs": 0.3}  # Recipe fields under the searched ones

    @field_validator("recipe")
    @classmethod
    def _valid_recipe(cls, v: dict[str, Any]) -> dict[str, Any]:
        return recipe_fields(v, "the search (proxy.epochs, seed, executor.threads)")


class CalibrationSection(StrictModel):
    """The early-stopping rule: the first epoch whose rank correlation with the final accuracy reaches it."""

    candidates: Annotated[int, Field(ge=3)] = 8  # trained for the full proxy budget (the first coarse batch)
    threshold: Annotated[float, Field(gt=0.0, le=1.0)] = 0.92  # Kendall tau (seed 000)
    epoch: PositiveInt | None = None  # fix the early-stopping epoch instead of calibrating


class PredictorSection(StrictModel):
    """The neural predictor: architecture encoder -> embedding; proxy head (MACs, params); accuracy head."""

    encoder: list[PositiveInt] = [128, 64]  # hidden widths; the last is the embedding
    head: list[PositiveInt] = [64]  # accuracy head's hidden widths (over embedding + recipe encoding)
    pretrain: bool = True  # pretrain the encoder on MACs / params of free samples (False: random init)
    pretrain_samples: PositiveInt = 2000
    pretrain_epochs: PositiveInt = 40
    # what the proxy head predicts: total (log MACs, log params of the network) or stages (the totals and the
    # log MACs / params of every stage: an embedding that must keep where the compute is, not two numbers)
    pretrain_targets: Literal["total", "stages"] = "total"
    # after pretraining, the embedding scaled back to its RMS at initialisation (the proxy head compensates):
    # the accuracy head then weighs it against the recipe's encoding as it would a random init's (False: keep
    # the scale pretraining leaves)
    rescale_embedding: bool = True
    freeze_epochs: PositiveInt = 50  # accuracy head only, encoder frozen (seed 000: 50)
    finetune_epochs: PositiveInt = 50  # end to end, decaying lr (seed 000: 50)
    lr: PositiveFloat = 3e-3  # Adam; cosine decay to 0 over the end-to-end phase
    weight_decay: Annotated[float, Field(ge=0.0)] = 1e-4
    batch_size: PositiveInt = 16
    huber_delta: PositiveFloat = 1.0  # in units of the accuracy's standard deviation
    ensemble: PositiveInt = 5  # predictors from different initialisations, averaged (their spread: uncertainty)
    bootstrap: bool = True  # each member fitted on a bootstrap resample of the trials (bagging)


class CoarseSection(StrictModel):
    pool: PositiveInt = 2048  # Sobol candidates that meet the constraints
    batch: PositiveInt = 16  # candidates trained per iteration after the first
    iterations: PositiveInt = 4  # the first is the calibration batch
    explore: Unit = 0.25  # share of a batch drawn at random from the pool instead of by prediction


class EvolutionSection(StrictModel):
    """The fine stage: an adaptive genetic algorithm that queries only the predictor."""

    population: PositiveInt = 32  # seeded with the best coarse candidates
    children: PositiveInt = 64  # per generation
    generations: PositiveInt = 200  # at most
    stall: PositiveInt = 15  # stop when the best has not improved for this many generations (G)
    mutation: Unit = 0.15  # initial per-dimension mutation probability (adapted)
    mutation_range: list[Unit] = [0.03, 0.5]  # [low, high] the adaptation keeps the mutation rate in
    crossover: Unit = 0.6  # initial crossover probability (adapted)
    crossover_range: list[Unit] = [0.2, 0.9]
    sigma: Annotated[float, Field(gt=0.0, le=1.0)] = 0.15  # a range's mutation step, in unit-cube coordinates
    objective: Literal["accuracy", "train_aware"] = "accuracy"  # train_aware: A * S^w * P^v (EfficientNetV2)
    uncertainty: Annotated[float, Field(ge=0.0)] = 2.0  # A = ensemble mean - this x its std (0: the mean)
    w: float = -0.07  # exponent of the normalised training step time S
    v: float = -0.05  # exponent of the params P
    top_k: PositiveInt = 5
    tol: Annotated[float, Field(ge=0.0)] = 1e-5  # an improvement smaller than this is a stall


class VerifySection(StrictModel):
    """The fine stage's best proposals trained on the proxy before the answer is chosen (:mod:`.verify`)."""

    candidates: Annotated[int, Field(ge=0)] = 8  # proposals trained, one per architecture; the result is the best
    # measured trained pair (0: the GA's top-K by prediction, untrained)


class StepTimeSection(StrictModel):
    """The measured step-time table of the space's blocks (objective train_aware)."""

    path: str | None = None  # JSON table (None: step_time.json in the run folder); measured where missing
    batch: PositiveInt = 64
    rounds: PositiveInt = 3


class ExecutorSection(StrictModel):
    kind: Literal["sequential", "process", "ray"] = "process"
    workers: PositiveInt = 2  # trials at a time (process, ray)
    threads: PositiveInt = 1  # torch threads per worker (the trials' recipe.threads)
    address: str = "local"  # ray: local (started here) | auto (the cluster of `ray start`) | HOST:PORT
    max_retries: Annotated[int, Field(ge=0)] = 2  # ray: runs of a trial whose worker process died


class RetrainSection(StrictModel):
    """The retraining of the winner (benchmarks and the full run; ``fbnas train --arch DIR/result.json``)."""

    epochs: PositiveInt = 30
    limit_train: PositiveInt | None = None
    # Recipe fields over the searched recipe in this retraining only: augmentation, which the few-epoch proxy
    # cannot judge (in short runs crop + flip cost accuracy, in long ones they pay), so it is not searched
    recipe: dict[str, Any] = Field(default_factory=dict)

    @field_validator("recipe")
    @classmethod
    def _valid_recipe(cls, v: dict[str, Any]) -> dict[str, Any]:
        return recipe_fields(v, "the retraining (retrain.epochs, its --seed and --threads)")


class JointNasSection(StrictModel):
    space: SpaceSection = SpaceSection()
    proxy: ProxySection = ProxySection()
    calibration: CalibrationSection = CalibrationSection()
    predictor: PredictorSection = PredictorSection()
    coarse: CoarseSection = CoarseSection()
    evolution: EvolutionSection = EvolutionSection()
    verify: VerifySection = VerifySection()
    step_time: StepTimeSection = StepTimeSection()
    executor: ExecutorSection = ExecutorSection()
    retrain: RetrainSection = RetrainSection()
    reuse_predictor: str | None = None  # a finished JointNAS run: reuse its predictor, rerun only the fine stage

    @model_validator(mode="after")
    def _sizes(self) -> JointNasSection:
        if self.calibration.candidates > self.coarse.pool:
            raise ValueError(f"calibration.candidates: must be <= coarse.pool ({self.coarse.pool}), got "
                             f"{self.calibration.candidates}")
        if self.calibration.epoch is not None and self.calibration.epoch > self.proxy.epochs:
            raise ValueError(f"calibration.epoch: must be <= proxy.epochs ({self.proxy.epochs}), got "
                             f"{self.calibration.epoch}")
        for name in ("mutation", "crossover"):
            bounds = getattr(self.evolution, f"{name}_range")
            if len(bounds) != 2 or bounds[0] > bounds[1]:
                raise ValueError(f"evolution.{name}_range: must be [low, high] with low <= high, got {bounds}")
            lo, hi = bounds
            if not lo <= getattr(self.evolution, name) <= hi:
                raise ValueError(f"evolution.{name}: must lie in {name}_range [{lo}, {hi}], got "
                                 f"{getattr(self.evolution, name)}")
        searched = sorted(set(self.retrain.recipe) & set(self.space.recipe))
        if searched:
            raise ValueError(f"retrain.recipe.{searched[0]}: a searched field (the retraining keeps the found value)")
        return self


class JointNasConfig(SearchConfig):
    strategy: Literal["jointnas"] = "jointnas"
    loss: LossConfig = LossConfig(cost="macs")  # unused by JointNAS (no supernet loss); macs needs no table
    jointnas: JointNasSection = JointNasSection()
