"""FBNetV3 JointNAS (seed 000, "FBNet V3"): predictor-guided joint search of architecture and training recipe.

Modules: :mod:`.config` (the ``jointnas:`` config section), :mod:`.spaces` (the joint space, exact costs and
constraints, the Sobol pool), :mod:`.trials` (a candidate trained on the proxy through ``fit()``),
:mod:`.earlystop` (the 0.92 rank-correlation rule), :mod:`.predictor` (encoder, proxy and accuracy heads),
:mod:`.coarse` (the iterative coarse stage), :mod:`.evolution` and :mod:`.fine` (the adaptive GA),
:mod:`.plots`, and :mod:`.strategy` (the registered ``jointnas`` strategy). See ``docs/jointnas.md``.
"""
