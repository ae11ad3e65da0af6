"""The .circ language grammar, shipped as package data (``circuitspec.grammar``)."""
