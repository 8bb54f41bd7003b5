"""fbnas: hardware-aware neural architecture search of the FBNet family.

Public API: :func:`create_model`, :func:`profile`; the command line is ``fbnas``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from fbnas.arch.spec import ArchSpec, load_spec
from fbnas.errors import FbnasError, SpecError
from fbnas.version import __version__

if TYPE_CHECKING:
    from fbnas.cost.counting import CostReport
    from fbnas.nn.model import FBNetModel

__all__ = ["ArchSpec", "FbnasError", "SpecError", "__version__", "create_model", "load_spec", "profile"]


def create_model(arch: str | Path | ArchSpec | dict, num_classes: int = 1000, **spec_changes: Any) -> FBNetModel:
    """Build a model from a zoo name (``fbnet_c``), a spec file, a dict or an :class:`ArchSpec`.

    ``spec_changes`` override spec fields, e.g. ``in_channels=1, input_size=28``.
    """
    from fbnas.arch.zoo import resolve_arch
    from fbnas.nn.model import build_model

    spec = resolve_arch(arch)
    if spec_changes:
        spec = spec.copy(**spec_changes)
    return build_model(spec, num_classes)


def profile(arch: str | Path | ArchSpec | dict, input_size: int | None = None, num_classes: int = 1000) -> CostReport:
    """Analytic MACs and params, per block and in total, at ``input_size`` (default: the spec's)."""
    from fbnas.arch.zoo import resolve_arch
    from fbnas.cost.counting import count

    return count(resolve_arch(arch), input_size, num_classes)
