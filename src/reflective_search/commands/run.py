"""``reflective-search run CONFIG.yaml [key=value ...]``: run or resume a YAML experiment."""

from __future__ import annotations

import argparse
import sys

from reflective_search.commands import add_command


def register(subparsers) -> None:
    parser = add_command(subparsers, "run",
                         "run a YAML experiment (resumable: run the same command again after a kill)",
                         "Appends one record per problem, config point and seed to OUTPUT_DIR/results.jsonl.")
    parser.add_argument("config", help="an experiment YAML (overrides of the documented defaults)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="overrides, e.g. search.mcts.children=2 workers=2 output_dir=/tmp/x")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from reflective_search.experiments import load_experiment, run_experiment
    from reflective_search.experiments.results import read_records

    torch.set_num_threads(1)
    spec = load_experiment(args.config, args.overrides)
    try:
        summary = run_experiment(spec, show_progress=not args.no_progress)
    except KeyboardInterrupt:
        kept = len(read_records(spec.output_dir))
        print(f"interrupted: {kept} records kept in {spec.output_dir}; run the same command again to resume",
              file=sys.stderr)
        return 130
    print(f"{summary.records} records in {summary.run_dir} ({summary.new_records} new), "
          f"accuracy {summary.accuracy:.3f}; next: reflective-search report {summary.run_dir}")
    return 0
