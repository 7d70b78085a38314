"""Fitting models: one model on one training set, repeated cross-validation, bundles and benchmarks.

Only the ``train`` and ``benchmark`` commands and background runs import this package; loading a
bundle and predicting never do (import-linter contract in pyproject.toml).
"""
