"""Experiments: search configs declared in YAML, run resumably over many problems, reported
as a table and a test-time scaling curve (accuracy against compute)."""

from reflective_search.experiments.report import Report, build_report
from reflective_search.experiments.runner import RunSummary, run_experiment
from reflective_search.experiments.spec import ExperimentSpec, load_experiment

__all__ = ["ExperimentSpec", "Report", "RunSummary", "build_report", "load_experiment", "run_experiment"]
