"""The op registry's read side: every op name (family or alias) resolved to its family and parameters.

Importing this module loads every built-in family module (:data:`FAMILY_MODULES`), so a lookup never depends
on import order. A new op family is a module that subclasses :class:`fbnas.nn.family.OpFamily`, registers
itself and is listed here; the builder, the cost counters, the latency tables and the op contract tests
(``tests/test_op_contract.py``) then cover it without further code.
"""

from __future__ import annotations

import importlib
from typing import Any

from fbnas.errors import SpecError
from fbnas.nn.family import ALIASES, FAMILIES, OpFamily

FAMILY_MODULES = ["fbnas.nn.blocks", "fbnas.nn.ghost", "fbnas.nn.efficientnet", "fbnas.nn.espnet",
                  "fbnas.nn.attention"]
for _module in FAMILY_MODULES:
    importlib.import_module(_module)


def op_names() -> list[str]:
    return sorted(ALIASES)


def family_names() -> list[str]:
    return sorted(FAMILIES)


def get_family(name: str) -> OpFamily:
    if name not in FAMILIES:
        raise SpecError(f"unknown op family {name!r}; valid: {', '.join(family_names())}")
    return FAMILIES[name]


def aliases() -> dict[str, tuple[str, dict[str, Any]]]:
    """Every op name -> (family name, preset kwargs); a family's own name maps to itself with no preset."""
    return dict(ALIASES)


def resolve_op(op: str, kwargs: dict[str, Any], basic_args: dict[str, Any]) -> tuple[OpFamily, dict[str, Any]]:
    """Family and fully-resolved parameters of ``op`` with user ``kwargs`` (these override the alias)."""
    if op not in ALIASES:
        import difflib

        close = difflib.get_close_matches(op, ALIASES, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise SpecError(f"unknown op {op!r}{hint}; valid ops: {', '.join(sorted(ALIASES))}")
    fam_name, preset = ALIASES[op]
    family = FAMILIES[fam_name]
    return family, family.resolve({**preset, **kwargs}, basic_args)
