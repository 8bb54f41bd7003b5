"""Hardware-aware latency lookup tables: measure blocks on the target, store them in SQLite, predict.

Public API: :class:`LatencyTable` (predict, cost_model), :func:`build_table`,
:class:`Prediction`.
"""

from fbnas.lut.predict import LatencyTable, Prediction, build_table, needed_entries, space_entries, term_entries

__all__ = ["LatencyTable", "Prediction", "build_table", "needed_entries", "space_entries", "term_entries"]
