"""Search strategies over a space (the strategy seam: :mod:`fbnas.search.strategy`); ``fbnas search NAME``.

Built in: ``dnas`` (FBNetV1), ``dmasking`` (FBNetV2). Spaces come from :mod:`fbnas.space`; search data from
:mod:`fbnas.data.prepare`; cost tables from :mod:`fbnas.cost.terms` and :mod:`fbnas.lut`.
"""
