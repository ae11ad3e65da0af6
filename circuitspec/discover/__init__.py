"""From a discovered node mask to a readable, verified .circ spec (the search itself: engine.discover)."""

from .measure import NodeStats, measure_nodes
from .writer import SpecDraft, draft_spec

__all__ = ["NodeStats", "SpecDraft", "draft_spec", "measure_nodes"]
