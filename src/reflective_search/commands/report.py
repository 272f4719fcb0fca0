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
    parser.add_argument("--by", metavar="FIELD", help="one table per value of a problem record field (e.g. depth), "
                        "and a plot of accuracy against it")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from reflective_search.errors import ConfigError
    from reflective_search.experiments.plot import plot_scaling
    from reflective_search.experiments.report import build_report, format_markdown, format_table, report_json

    if args.by:
        return _run_by(args)
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


def _run_by(args: argparse.Namespace) -> int:
    """``--by FIELD``: a table per value, written to report_by_FIELD.md, and by_FIELD.png."""
    from reflective_search.experiments.plot import plot_by
    from reflective_search.experiments.report import build_reports_by, format_markdown, format_table, report_json

    reports, run_dir = build_reports_by(args.run_dir, args.by), Path(args.run_dir)
    markdown = "".join(f"## {args.by} {value}\n\n{format_markdown(r)}\n" for value, r in reports.items())
    (run_dir / f"report_by_{args.by}.md").write_text(markdown, encoding="utf-8")
    plot_by(reports, args.by, run_dir / f"by_{args.by}.png")
    if args.json:
        print(json.dumps({str(value): report_json(r) for value, r in reports.items()}, indent=2))
    else:
        print("\n\n".join(f"{args.by} {value}\n{format_table(r)}" for value, r in reports.items()))
        print(f"wrote {run_dir / f'report_by_{args.by}.md'} and {run_dir / f'by_{args.by}.png'}")
    return 0
