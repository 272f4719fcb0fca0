"""``reflective-search report RUN_DIR [--json]``: the table, report.md and scaling.png of a run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from reflective_search.commands import add_command

REPORT_FILE = "report.md"
PLOT_FILE = "scaling.png"


def register(subparsers) -> None:
    parser = add_command(subparsers, "report", "summarise a run: accuracy and compute per config point",
                         f"Prints the table and writes {REPORT_FILE} and {PLOT_FILE} into the run directory.")
    parser.add_argument("run_dir", help="the output_dir of a run")
    parser.add_argument("--json", action="store_true", help="print the table as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from reflective_search.errors import ConfigError
    from reflective_search.experiments.plot import plot_scaling
    from reflective_search.experiments.report import build_report, format_markdown, format_table, report_json

    report = build_report(args.run_dir)
    run_dir = Path(args.run_dir)
    try:
        (run_dir / REPORT_FILE).write_text(format_markdown(report), encoding="utf-8")
        plot_scaling(report, run_dir / PLOT_FILE)
    except OSError as exc:
        raise ConfigError(f"cannot write the report into {run_dir} ({exc.strerror or exc}): copy the run "
                          "directory somewhere writable") from None
    if args.json:
        print(json.dumps(report_json(report), indent=2))
    else:
        print(format_table(report))
        print(f"wrote {run_dir / REPORT_FILE} and {run_dir / PLOT_FILE}")
    return 0
