"""Verification: run a resolved spec's ablation conditions and turn per-example metrics into verdicts."""
