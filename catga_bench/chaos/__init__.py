"""Chaos experiments as data (``catga-bench chaos run FILE``): :mod:`~.model` (the YAML/TOML
format), :mod:`~.env` (broker, fault proxy, core and load run), :mod:`~.activities` (what each
action and probe does), :mod:`~.runner` (the run and its rollbacks), :mod:`~.journal` (the
journal, with Chaos Toolkit's field names), :mod:`~.cli`."""

from catga_bench.chaos.cli import main
from catga_bench.chaos.model import Experiment, ExperimentError, load_experiment

__all__ = ["Experiment", "ExperimentError", "load_experiment", "main"]
