"""Summarising a run: one row per config point, and the test-time scaling fit per method.

The fit is ``accuracy = a + b * log10(compute)`` by least squares over a method's points,
where compute is the mean FLOPs per problem (2 x parameters x forwarded tokens). A method
with fewer than two distinct compute values gets no fit, and the report says so.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import fmean
from typing import Any, Sequence

import numpy as np

from reflective_search.errors import ConfigError
from reflective_search.experiments.results import read_records

NO_FIT_NOTE = "fewer than 2 distinct compute values: no fit"


@dataclass(frozen=True, slots=True)
class PointRow:
    method: str  # the search method of these records
    point: dict[str, Any]  # the swept values (dotted keys)
    accuracy: float  # fraction of records correct
    problems: int  # distinct problems
    seeds: int  # distinct seeds
    generated_tokens: float  # mean per record
    forwarded_tokens: float  # mean per record
    flops: float  # mean per record: 2 x parameters x forwarded tokens
    seconds: float  # mean wall seconds per record
    cpu_seconds: float  # mean CPU seconds per record (nan for records written before it was kept)
    unspent_tokens: float  # mean token budget MCTS left unspent, having nothing left to expand


@dataclass(frozen=True, slots=True)
class ScalingFit:
    a: float | None  # intercept (accuracy at 1 FLOP, extrapolated); None: no fit
    b: float | None  # accuracy gained per tenfold compute; None: no fit
    r2: float | None  # coefficient of determination; None: no fit or constant accuracy
    note: str  # why a value is missing ("" when all are there)


@dataclass(frozen=True, slots=True)
class Report:
    run_dir: str  # the run directory summarised
    rows: tuple[PointRow, ...]  # sorted by method, then compute
    fits: dict[str, ScalingFit]  # by method


def build_report(run_dir: str | Path) -> Report:
    """Read a run directory's results and summarise them."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run directory {run_dir} does not exist: pass the output_dir of a run")
    records = read_records(run_dir)
    if not records:
        raise ConfigError(f"{run_dir} holds no results yet: run the experiment first")
    return _report(str(run_dir), records)


def build_reports_by(run_dir: str | Path, field: str) -> dict[Any, Report]:
    """One report per value of the problems' record ``field`` (e.g. ``depth``), in value order."""
    records = read_records(Path(build_report(run_dir).run_dir))
    values = problem_field(Path(run_dir), field)
    groups: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[values[json.dumps(record["problem_id"])]].append(record)
    return {value: _report(str(run_dir), groups[value]) for value in sorted(groups)}


def problem_field(run_dir: Path, field: str) -> dict[str, Any]:
    """Each problem's ``field`` value by its id (as JSON), from the run's problems file."""
    from reflective_search.experiments.results import PROBLEMS_FILE

    lines = (run_dir / PROBLEMS_FILE).read_text(encoding="utf-8").splitlines()
    entries = [json.loads(line) for line in lines if line.strip()]
    missing = [e["problem_id"] for e in entries if field not in e["record"]]
    if missing:
        raise ConfigError(f"--by {field}: problem {missing[0]!r} has no {field!r} field; "
                          f"group by a field every problem record has")
    return {json.dumps(e["problem_id"]): e["record"][field] for e in entries}


def _report(run_dir: str, records: Sequence[dict[str, Any]]) -> Report:
    rows = summarise(records)
    methods = dict.fromkeys(row.method for row in rows)
    fits = {method: fit_scaling([r.flops for r in rows if r.method == method],
                                [r.accuracy for r in rows if r.method == method]) for method in methods}
    return Report(run_dir, tuple(rows), fits)


def summarise(records: Sequence[dict[str, Any]]) -> list[PointRow]:
    """One row per (curve, point), means over its records."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[curve_name(record["method"], record["point"]), json.dumps(record["point"], sort_keys=True)].append(record)
    rows = [_row(method, members[0]["point"], members) for (method, _), members in groups.items()]
    return sorted(rows, key=lambda row: (row.method, row.flops, json.dumps(row.point, sort_keys=True)))


def curve_name(method: str, point: dict[str, Any]) -> str:
    """The method plus the point's swept choices (text values, e.g. ``mcts.root=gumbel``).

    Numbers size a method (n, width, budget) and move a point along its curve; a text
    value picks a variant (Gumbel root, weighted vote), which gets a curve of its own.
    """
    choices = [f"{key.split('.')[-1]}={value}" for key, value in point.items()
               if key != "search.method" and isinstance(value, str)]
    return " ".join([method, *choices])


def _row(method: str, point: dict[str, Any], records: list[dict[str, Any]]) -> PointRow:
    def mean(key: str, missing: float | None = None) -> float:
        return fmean(float(r[key] if key in r or missing is None else missing) for r in records)

    return PointRow(
        method=method, point=point, accuracy=fmean(bool(r["correct"]) for r in records),
        problems=len({json.dumps(r["problem_id"]) for r in records}), seeds=len({r["seed"] for r in records}),
        generated_tokens=mean("generated_tokens"), forwarded_tokens=mean("forwarded_tokens"),
        flops=mean("flops"), seconds=mean("seconds"), cpu_seconds=mean("cpu_seconds", math.nan),
        unspent_tokens=mean("unspent_tokens", 0.0),
    )


def fit_scaling(compute: Sequence[float], accuracy: Sequence[float]) -> ScalingFit:
    """Least-squares ``accuracy = a + b * log10(compute)`` (points with compute <= 0 left out)."""
    pairs = [(math.log10(c), y) for c, y in zip(compute, accuracy) if c > 0]
    if len({x for x, _ in pairs}) < 2:
        return ScalingFit(None, None, None, NO_FIT_NOTE)
    x, y = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    b, a = np.polyfit(x, y, 1)
    residual = float(np.sum((y - (a + b * x)) ** 2))
    total = float(np.sum((y - y.mean()) ** 2))
    if total == 0:
        return ScalingFit(float(a), float(b), None, "accuracy is the same at every compute: R^2 undefined")
    return ScalingFit(float(a), float(b), 1.0 - residual / total, "")


# -- rendering ------------------------------------------------------------------------------

COLUMNS = ("method", "point", "accuracy", "problems", "seeds", "gen tokens", "fwd tokens", "FLOPs", "seconds",
           "cpu s", "unspent", "fit a", "fit b", "R^2")


def report_json(report: Report) -> dict[str, Any]:
    """The report as plain data: rows (fit columns included) and the fits by method."""
    rows = []
    for row in report.rows:
        fit = report.fits[row.method]
        rows.append({**asdict(row), "fit_a": fit.a, "fit_b": fit.b, "fit_r2": fit.r2})
    return {"run_dir": report.run_dir, "rows": rows, "fits": {m: asdict(f) for m, f in report.fits.items()}}


def table_cells(report: Report) -> list[list[str]]:
    """The table's rows as display strings, in COLUMNS order."""
    cells = []
    for row in report.rows:
        fit = report.fits[row.method]
        cells.append([
            row.method, describe_point(row.point), f"{row.accuracy:.3f}", str(row.problems), str(row.seeds),
            f"{row.generated_tokens:.1f}", f"{row.forwarded_tokens:.1f}", f"{row.flops:.3g}", f"{row.seconds:.3f}",
            f"{row.cpu_seconds:.3f}", f"{row.unspent_tokens:.1f}", _number(fit.a), _number(fit.b), _number(fit.r2),
        ])
    return cells


def format_table(report: Report) -> str:
    """An aligned plain-text table, then the notes on missing fits."""
    cells = [list(COLUMNS), *table_cells(report)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines + _notes(report))


def format_markdown(report: Report) -> str:
    """The same table in Markdown (for a README)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in table_cells(report)]
    return "\n".join(lines + [""] + _notes(report)) + "\n"


def describe_point(point: dict[str, Any]) -> str:
    """Swept values other than the method, e.g. ``budget.tokens=512``; ``-`` when none."""
    shown = [f"{key.removeprefix('search.')}={value}" for key, value in point.items() if key != "search.method"]
    return ", ".join(shown) or "-"


def _notes(report: Report) -> list[str]:
    return [f"{method}: {fit.note}" for method, fit in report.fits.items() if fit.note]


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"
