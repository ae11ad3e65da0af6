"""Tensor side of circuitspec: the weight-sparse model, training, tasks and checkpoints.

Imported as ``circuitspec.engine`` (the ``engine/`` folder is mapped there in pyproject.toml).
"""
