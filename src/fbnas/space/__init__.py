"""The space model: named, typed dimensions; a sample is a JSON dict; ``build(sample)`` gives an arch spec
and/or a training recipe. A leaf of the package (it imports no torch).

Spaces: :class:`LayerwiseSpace` (FBNetV1), :class:`MaskingSpace` (FBNetV2), :class:`FPNasSpace` (FP-NAS's
multi-variate layers), :class:`StagewiseSpace` (FBNetV3's architecture: resolution, stem, per-stage k / e / c / n /
SE), :class:`JointSpace` (compositions under name prefixes, e.g. architecture + recipe for FBNetV3); the recipe
space comes from the ``Recipe`` fields (``fbnas.train.recipe.recipe_space``).
"""

from fbnas.space.base import Built, CostTerm, DimSpace, Sample, Space
from fbnas.space.dims import Choice, Dim, Range
from fbnas.space.fpnas import FPNasSpace
from fbnas.space.joint import JointSpace
from fbnas.space.layerwise import Candidate, LayerwiseSpace, SearchLayer
from fbnas.space.masking import MaskingSpace
from fbnas.space.registry import load_space, space_from_dict, space_names
from fbnas.space.stagewise import StagewiseSpace

__all__ = ["Built", "Candidate", "Choice", "CostTerm", "Dim", "DimSpace", "FPNasSpace", "JointSpace",
           "LayerwiseSpace", "MaskingSpace", "Range", "Sample", "SearchLayer", "Space", "StagewiseSpace", "load_space",
           "space_from_dict", "space_names"]
