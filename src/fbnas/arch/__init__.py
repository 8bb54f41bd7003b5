"""Architectures as data: arch specs, the FBNet model zoo."""

from fbnas.arch.spec import ArchSpec, Block, BlockDef, load_spec

__all__ = ["ArchSpec", "Block", "BlockDef", "load_spec"]
