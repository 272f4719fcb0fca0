"""Benchmarks that print JSON: ``python -m reflective_search.bench {expander,tree,methods,smol} --json``.

Ratios are measured in one process, on one workload, so CPU and GPU runs compare; they
are commands to run, never timed tests.
"""
