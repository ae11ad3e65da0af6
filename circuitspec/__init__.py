"""circuitspec: declarative circuit specifications, verified against weight-sparse transformers."""

__version__ = "0.1.0"
