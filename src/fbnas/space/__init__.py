"""Search spaces as data: per-layer candidate lists over the op registry."""

from fbnas.space.space import Candidate, SearchLayer, SearchSpace, load_space, space_names

__all__ = ["Candidate", "SearchLayer", "SearchSpace", "load_space", "space_names"]
