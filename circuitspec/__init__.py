"""circuitspec: declarative circuit specifications, verified against weight-sparse transformers.

``circuitspec.load_spec(path_or_text)`` is the notebook API (:mod:`circuitspec.notebook`); it is imported on
first use, so ``import circuitspec`` stays light (no torch) for the command line.
"""

__version__ = "0.1.0"

_NOTEBOOK = ("load_spec", "scan", "Spec", "Verdicts", "Falsifications", "Knockouts", "Picture")


def __getattr__(name: str):
    if name in _NOTEBOOK:
        from . import notebook

        return getattr(notebook, name)
    raise AttributeError(f"module 'circuitspec' has no attribute {name!r}")
