"""Cost models: pure functions of an arch spec (and a latency table). See counting.py, formulas.py."""
