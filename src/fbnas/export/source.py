"""What to export: a zoo name or spec file (fresh weights) or a training checkpoint (its trained weights)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from fbnas.arch.spec import ArchSpec
from fbnas.errors import FbnasError, SpecError


@dataclass
class ModelSource:
    model: nn.Module  # eval mode
    spec: ArchSpec
    num_classes: int
    trained: bool  # weights come from a checkpoint
    origin: str  # what the user named


def checkpoint_file(arch: str | Path) -> Path | None:
    """The checkpoint file ``arch`` names (``*.pt`` or a run folder holding checkpoint.pt), else None."""
    p = Path(arch)
    if p.suffix == ".pt":
        return p
    from fbnas.runs import folder_checkpoint_or_result

    found = folder_checkpoint_or_result(p)
    return found if found is not None and found.suffix == ".pt" else None


def load_trained(path: Path) -> tuple[nn.Module, ArchSpec]:
    """Model (EMA weights when the run kept an EMA) and spec of a training checkpoint, as one-line errors."""
    from fbnas.arch.zoo import load_checkpoint_arch
    from fbnas.train.checkpoint import model_from_checkpoint

    load_checkpoint_arch(path)  # names the file in a one-line SpecError when it is not an fbnas checkpoint
    try:
        model, spec = model_from_checkpoint(path)
    except FbnasError:
        raise
    except Exception as e:  # noqa: BLE001 - a damaged checkpoint is a user error, not a crash
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FbnasError(f"{path}: cannot load the checkpoint's weights ({first[:200]})") from None
    return model.eval(), spec


def load_source(arch: str | Path | ArchSpec | dict, num_classes: int | None = None) -> ModelSource:
    """Build the model to export. Checkpoints keep their num_classes (a different ``num_classes`` is an error)."""
    from fbnas import create_model
    from fbnas.arch.zoo import resolve_arch

    ckpt = checkpoint_file(arch) if isinstance(arch, (str, Path)) else None
    if ckpt is not None:
        model, spec = load_trained(ckpt)
        trained_classes = int(model.num_classes)
        if num_classes is not None and num_classes != trained_classes:
            raise FbnasError(f"{ckpt}: the checkpoint was trained for {trained_classes} classes, "
                             f"not --num-classes {num_classes}")
        return ModelSource(model, spec, trained_classes, True, str(arch))
    spec = resolve_arch(arch)
    classes = 1000 if num_classes is None else num_classes
    if classes < 1:
        raise SpecError(f"num_classes must be a positive integer, got {classes}")
    return ModelSource(create_model(spec, num_classes=classes).eval(), spec, classes, False, str(arch))


def calibrate_untrained(model: nn.Module, input_shape: tuple[int, ...], seed: int = 0, batch: int = 8,
                        min_var: float = 1e-2) -> None:
    """Give an untrained model BN parameters a trained one could have, so a numeric check means something.

    Fresh init zeroes some BN gammas (zero_last_bn_gamma), which can make the output identically zero, and BN
    statistics of 0/1 let activations grow with depth. Here gammas/betas get random values and the running
    statistics are measured on one random batch (as after training), in place. Variances are floored at
    ``min_var``: a channel that is almost constant on a small random batch would otherwise be amplified
    hundreds of times on other inputs.
    """
    gen = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in bns:
            if bn.weight is not None:
                bn.weight.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
                bn.bias.copy_(torch.randn(bn.num_features, generator=gen) * 0.1)
            bn.reset_running_stats()
            bn.momentum = None  # running stats = this batch's statistics
        model.eval()
        for bn in bns:
            bn.train()  # only the BNs: dropout stays off
        model(torch.randn(batch, *input_shape[1:], generator=gen))
        model.eval()
        for bn in bns:
            bn.momentum = 0.1
            bn.running_var.clamp_(min=min_var)
