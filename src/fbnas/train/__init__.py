"""fbnas.train: the training recipe, :func:`fit` and training runs.

Public API: :class:`Recipe` (+ :class:`RecipeError`, :func:`recipe_space`), :func:`fit` (model, data, recipe
and callbacks in, metrics out), :func:`train` (a run folder around it), the reusable pieces
:func:`train_epoch`, :func:`evaluate`, :func:`build_optimizer`, :func:`build_scheduler`, :class:`ModelEma`,
:func:`prepare_model`, and :func:`model_from_checkpoint`.
"""

from fbnas.train.checkpoint import load_checkpoint, model_from_checkpoint
from fbnas.train.fit import (
    Callback,
    EpochTotals,
    Fit,
    FitResult,
    ModelEma,
    augment_config,
    build_optimizer,
    build_scheduler,
    evaluate,
    fit,
    prepare_model,
    train_epoch,
)
from fbnas.train.recipe import LR_SCHEDULES, OPTIMIZERS, Recipe, RecipeError, lr_factor, recipe_space
from fbnas.train.run import TrainingInterrupted, train

__all__ = [
    "LR_SCHEDULES", "OPTIMIZERS", "Callback", "EpochTotals", "Fit", "FitResult", "ModelEma", "Recipe", "RecipeError",
    "TrainingInterrupted", "augment_config", "build_optimizer", "build_scheduler", "evaluate", "fit",
    "load_checkpoint", "lr_factor", "model_from_checkpoint", "prepare_model", "recipe_space", "train", "train_epoch",
]
