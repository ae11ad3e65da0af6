"""Default values that --help shows, here so that reading the command line imports no torch.

Each is the value of the module that uses it (named beside it); tests/test_cli.py checks that they agree.
"""

from __future__ import annotations

SAMPLES = 100  # circuitspec.verify.runner.RunSettings.samples: inputs per claim group
BASELINES = 50  # RunSettings.baselines
PARTIAL_ABLATIONS = 8  # RunSettings.partial_ablations
SEED = 0  # RunSettings.seed, and discover's search seed
DEFAULT_MODEL = "py-sparse-small"  # circuitspec.engine.zoo.DEFAULT_MODEL
EVAL_SEED = "eval"  # circuitspec.engine.evaluate.EVAL_SEED
STATE_DIR = "train_state"  # circuitspec.engine.train_state.STATE_DIR
DEFAULT_WINDOWS = 1024  # circuitspec.engine.corpus_means.DEFAULT_WINDOWS
SHOW_SAMPLES = 200  # circuitspec.show.ShowOptions.samples
SHOW_SEED = 0  # ShowOptions.seed
SHOW_MAX_EDGES = 120  # ShowOptions.max_edges
SHOW_EXPAND = 8  # ShowOptions.expand
DISCOVER_STEPS = 600  # circuitspec.engine.discover.DEFAULT_STEPS
SCAN_MAX_UNITS = 4096  # circuitspec.verify.scan.MAX_UNITS
