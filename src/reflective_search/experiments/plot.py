"""The test-time scaling plot: accuracy against mean compute per problem, one curve per method.

Drawn on a bare ``Figure`` with the Agg canvas, so no GUI backend or global pyplot state
is touched (safe in tests and on machines without a display).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reflective_search.experiments.report import Report


def plot_scaling(report: Report, path: str | Path) -> Path:
    """Write the plot as PNG to ``path``: points joined in order of compute, fits dashed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 4.8), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for method, fit in report.fits.items():
        points = sorted((row.flops, row.accuracy) for row in report.rows if row.method == method and row.flops > 0)
        if not points:
            continue
        compute, accuracy = zip(*points)
        (line,) = axes.plot(compute, accuracy, marker="o", label=method)
        if fit.b is not None:
            grid = np.logspace(np.log10(compute[0]), np.log10(compute[-1]), 50)
            r2 = "" if fit.r2 is None else f", R²={fit.r2:.2f}"
            axes.plot(grid, fit.a + fit.b * np.log10(grid), linestyle="--", color=line.get_color(),
                      label=f"{method} fit: {fit.a:.2f} {'-' if fit.b < 0 else '+'} {abs(fit.b):.2f}·log10(C){r2}")
    axes.set_xscale("log")
    axes.set_xlabel("mean compute per problem (FLOPs = 2 × parameters × forwarded tokens)")
    axes.set_ylabel("accuracy")
    axes.set_ylim(-0.02, 1.02)
    axes.set_title(f"Test-time scaling: {Path(report.run_dir).name}")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    figure.savefig(path, dpi=120)
    return Path(path)


def plot_by(reports: dict, field: str, path: str | Path) -> Path:
    """Accuracy against a problem field (e.g. depth), one line per method and point."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from reflective_search.experiments.report import describe_point

    figure = Figure(figsize=(7.5, 4.8), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    curves: dict[str, list[tuple]] = {}
    for value, report in reports.items():
        for row in report.rows:
            label = row.method if describe_point(row.point) == "-" else f"{row.method} {describe_point(row.point)}"
            curves.setdefault(label, []).append((value, row.accuracy, row.generated_tokens))
    for label, points in curves.items():
        tokens = "/".join(f"{t:.0f}" for _, _, t in points)
        axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=f"{label} ({tokens} tokens)")
    axes.set_xlabel(field)
    axes.set_ylabel("accuracy")
    axes.set_ylim(-0.02, 1.02)
    axes.set_title(f"Accuracy against {field}: {Path(next(iter(reports.values())).run_dir).name}")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="x-small")
    figure.savefig(path, dpi=120)
    return Path(path)
