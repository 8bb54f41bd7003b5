"""One pipeline from search to a report: ``fbnas run`` (search, retrain, baseline, export, latency, report)."""
