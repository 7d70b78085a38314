"""The models: registry of the eight configurations, networks, fitted models and bundles.

A bundle loads, verifies and predicts with this package alone; nothing here imports the training code.
"""
