"""Tracking: the MLflow store and its runs, named artifacts, the model registry, the W&B mirror."""
