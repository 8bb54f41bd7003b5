"""fbnas.train: the training recipe, loop and checkpoints.

Public API: :class:`Recipe` (+ :class:`RecipeError`), :func:`train`, the reusable pieces :func:`train_epoch`,
:func:`evaluate`, :func:`build_optimizer`, :func:`build_scheduler`, :class:`ModelEma`, :func:`prepare_model`,
and :func:`fbnas.train.checkpoint.model_from_checkpoint`.
"""

from fbnas.train.checkpoint import load_checkpoint, model_from_checkpoint
from fbnas.train.loop import (
    EpochTotals,
    ModelEma,
    TrainingInterrupted,
    augment_config,
    build_optimizer,
    build_scheduler,
    evaluate,
    prepare_model,
    train,
    train_epoch,
)
from fbnas.train.recipe import LR_SCHEDULES, OPTIMIZERS, Recipe, RecipeError, lr_factor

__all__ = [
    "LR_SCHEDULES", "OPTIMIZERS", "EpochTotals", "ModelEma", "Recipe", "RecipeError", "TrainingInterrupted",
    "augment_config", "build_optimizer", "build_scheduler", "evaluate", "load_checkpoint", "lr_factor",
    "model_from_checkpoint", "prepare_model", "train", "train_epoch",
]
