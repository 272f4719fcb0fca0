"""``reflective-search evaluate calibrate|heads|search``: any model, Countdown or a problems file.

    reflective-search evaluate calibrate --model runs/policy            # validation split
    reflective-search evaluate heads --model A --model B --split valid  # SPRM quality, same samples
    reflective-search evaluate search --out runs/eval                   # the 500 held-out problems
    reflective-search evaluate search --model M --problems-file test.jsonl --task math

Each prints a table and the JSON it also writes (``--out``); ``search`` also draws a PNG of
accuracy against generated tokens per method.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

from reflective_search.commands import add_command, search_defaults_line


SEARCH_METHODS = ("greedy", "best_of_n", "beam", "dvts", "rebase", "mcts")
STEP_METHODS = ("beam", "dvts", "rebase", "mcts")  # searches over steps, each with its own --METHOD overrides
EXAMPLES = {"beam": "beam.width=2 beam.expand=4", "dvts": "dvts.n=8 dvts.width=2", "rebase": "rebase.width=8",
            "mcts": "budget.tokens=400 mcts.children=2"}


def register(subparsers) -> None:
    parser = add_command(subparsers, "evaluate", "measure a policy, its SPRM head and the searches",
                         "On Countdown's splits or a problems file; each of calibrate, heads and search prints a "
                         "table and writes its JSON (search also a PNG) into --out.")
    which = parser.add_subparsers(dest="which", required=True)
    calibrate = add_command(which, "calibrate", "measure the policy alone on the validation split")
    calibrate.add_argument("--temperatures", type=float, nargs="+", default=[0.7, 1.0])
    heads = add_command(which, "heads", "measure the SPRM quality of one or more models on the same samples")
    heads.add_argument("--split", choices=["valid", "eval"], default="valid")
    heads.add_argument("--temperature", type=float, default=None,
                       help="sampling temperature (default: the model's search default, else the library's 0.7)")
    heads.add_argument("--trajectories", help="a JSONL of samples to score: reused if it exists, else written")
    search = add_command(which, "search", "compare greedy, Best-of-N variants, self-consistency and MCTS")
    search.add_argument("--temperature", type=float, default=None,
                       help="sampling temperature (default: the model's search default, else the library's 0.7)")
    search.add_argument("--split", choices=["valid", "eval"], default="eval")
    for method in STEP_METHODS:
        search.add_argument(f"--{method}", nargs="*", default=[], metavar="KEY=VALUE",
                            help=f"{method} overrides, e.g. {EXAMPLES[method]}")
    search.add_argument("--methods", nargs="+", choices=SEARCH_METHODS, default=list(SEARCH_METHODS),
                        help="which to run (default: all; best_of_n also gives log-prob and self-consistency)")
    for sub in (calibrate, heads, search):
        sub.add_argument("--model", action="append", help="saved model directory or shipped name "
                         "(default: the shipped model); heads takes several")
        sub.add_argument("--numbers", type=int, nargs="+", default=[3], choices=range(2, 6), metavar="N",
                         help="number counts to evaluate (2-5)")
        sub.add_argument("--problems", type=int, default=None, help="problems per number count (default: all)")
        sub.add_argument("--problems-file", help="a JSONL file of records with 'problem' and 'answer' to evaluate "
                                                 "on instead of the Countdown splits")
        sub.add_argument("--task", choices=["countdown", "math", "arithmetic"],
                         help="how answers are checked (default: countdown, or math for --problems-file)")
        sub.add_argument("--samples", type=int, default=8, help="samples per problem (N of Best-of-N)")
        sub.add_argument("--out", help="directory for the JSON (and PNG) results")
        sub.add_argument("--no-progress", dest="progress", action="store_false",
                         help="no progress bars (they are shown only on a terminal, on stderr)")
        sub.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from reflective_search.commands import prepare_output_dir

    torch.set_num_threads(1)
    if args.out:
        prepare_output_dir(args.out, "--out")
    results = {"calibrate": _calibrate, "heads": _heads, "search": _search}[args.which](args)
    text = _flat_number_lists(json.dumps(_without_nan(results), indent=1, default=str))
    print(text)
    if args.out:
        (Path(args.out) / f"{args.which}.json").write_text(text + "\n")
    return 0


# A JSON list of numbers (or nulls) that indent spread over one line per item. It starts with
# a raw newline, which no JSON string holds, so text inside strings is never touched.
_NUMBER_LIST = re.compile(r"\[\n\s*((?:(?:-?[\d.eE+-]+|null),\n\s*)*(?:-?[\d.eE+-]+|null))\n\s*\]")


def _flat_number_lists(text: str) -> str:
    """Indented JSON with each list of numbers on one line (500 verdicts are one line, not 500)."""
    return _NUMBER_LIST.sub(lambda m: "[" + ", ".join(item.strip() for item in m.group(1).split(",")) + "]", text)


def _without_nan(value):
    """NaN (e.g. an AUC with one class only) as null: json.dumps would write invalid JSON."""
    if isinstance(value, dict):
        return {key: _without_nan(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_without_nan(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def _models(args) -> list:
    from reflective_search.default_model import load_default_model

    return [load_default_model(name) for name in (args.model or [None])]


def _task(args):
    from reflective_search.train.tasks import get_task

    return get_task(args.task or ("math" if args.problems_file else "countdown"))


def _groups(args, split: str) -> list[tuple[str, list]]:
    """(label, problems) per evaluated group: each number count, or the one problems file."""
    if args.problems_file:
        from reflective_search.train.tasks import read_problem_file

        need = "answer" if _task(args).name == "math" else None
        problems = read_problem_file(args.problems_file, need)
        return [(Path(args.problems_file).name, problems[: args.problems] if args.problems else problems)]
    return [(f"{count} numbers", _problems(split, count, args.problems)) for count in args.numbers]


def _problems(split: str, count: int, n: int | None):
    from reflective_search.train.data import EVAL_COUNT, VALID_COUNT, eval_problems, valid_problems
    from reflective_search.train.tasks import TrainingProblem

    drawn = eval_problems(count, n or EVAL_COUNT) if split == "eval" else valid_problems(count, n or VALID_COUNT)
    return [TrainingProblem(p.text, str(p.target)) for p in drawn]


def _calibrate(args) -> dict:
    from reflective_search.train.evaluate import calibrate

    model, task, out = _models(args)[0], _task(args), {}
    for label, problems in _groups(args, "valid"):
        row = calibrate(model, problems, args.temperatures, args.samples, task=task, progress=args.progress)
        out[label] = row
        print(_calibrate_line(label, row, args.samples))
    return out


def _calibrate_line(label: str, row: dict, samples: int) -> str:
    """One problem group's calibration; the good-step fraction only where it was measured."""
    cells = [f"greedy {row['greedy']:.3f}"] + [
        f"{key}: sample {v['per_sample']:.3f} pass@{samples} {v[f'pass@{samples}']:.3f} SC {v['self_consistency']:.3f}"
        + (f" good steps {v['positive_steps']:.3f}" if "positive_steps" in v else "")
        for key, v in row.items() if key.startswith("T=")]
    return f"{label} | " + " | ".join(cells)


def _heads(args) -> dict:
    """Every model's head scores the same samples (drawn once, by the first model's policy)."""
    from reflective_search.train.evaluate import features_and_logprobs, score_trajectories, with_logprobs
    from reflective_search.train.metrics import (
        auc_intervals, best_of_n_accuracy, head_summary, logprob_score, sample_summary, trajectory_auc,
    )

    models, task, out = _models(args), _task(args), {}
    for position, (label, problems) in enumerate(_groups(args, args.split)):
        index = {p: i for i, p in enumerate(problems)}
        trajectories = _head_samples(models[0], problems, args, position, task)
        features, logprobs = features_and_logprobs(models[0], trajectories, progress=args.progress)
        passes = [(models[0], features)]
        for name, model in zip(args.model or ["shipped"], models):
            scored = score_trajectories(model, trajectories, index, task,
                                        _features(model, trajectories, passes, args.progress))
            records = with_logprobs(scored, logprobs)
            summary = {**head_summary(records), "trajectory_auc_logprob": trajectory_auc(records, logprob_score),
                       "best_of_n_logprob": best_of_n_accuracy(records, logprob_score), **auc_intervals(records),
                       **sample_summary(records)}
            out[f"{label} | {name}"] = summary
            print(_heads_line(f"{label} | {name}", summary, args.samples))
    return out


def _heads_line(label: str, summary: dict, samples: int) -> str:
    """One model's head quality; the step AUCs only where step labels measured them."""
    low, high = summary["trajectory_auc_ci"]
    steps = (f" | step AUC min over positions {summary['step_auc_min_position']:.3f} | by position "
             f"{_fmt(summary['step_auc_by_position'])}" if "step_auc_by_position" in summary else "")
    return (f"{label} | trajectory AUC {summary['trajectory_auc']:.3f} [{low:.3f}, {high:.3f}] (policy log-prob "
            f"{summary['trajectory_auc_logprob']:.3f}){steps} | best-of-{samples} {summary['best_of_n']:.3f} "
            f"(log-prob {summary['best_of_n_logprob']:.3f}, self-consistency {summary['self_consistency']:.3f}, "
            f"pass@{samples} {summary['pass_at_n']:.3f})")


def _features(model, trajectories, passes: list, progress: bool) -> tuple:
    """The step features of ``trajectories`` under ``model``, reusing an earlier model's
    pass when both read the same features (one pass per distinct backbone)."""
    from reflective_search.train.evaluate import reads_same_features
    from reflective_search.train.step_features import frozen_features

    for other, features in passes:
        if reads_same_features(model, other):
            return features
    passes.append((model, frozen_features(model, trajectories, progress=progress)))
    return passes[-1][1]


def _head_samples(model, problems, args, position: int, task):
    from reflective_search.train.sprm import load_trajectories, sample_trajectories, save_trajectories

    several = len(args.numbers) > 1 and not args.problems_file
    path = Path(f"{args.trajectories}.{args.numbers[position]}") if args.trajectories and several else \
        (Path(args.trajectories) if args.trajectories else None)
    if path is not None and path.is_file():
        return load_trajectories(model, path)
    trajectories = sample_trajectories(model, problems, args.samples, temperature(args, model), seed=1, task=task,
                                       progress=args.progress)
    if path is not None:
        save_trajectories(trajectories, path)
    return trajectories


def _fmt(by_position: dict) -> str:
    return " ".join(f"{k}:{v:.3f}" for k, v in by_position.items())


def _search(args) -> dict:
    from reflective_search.train.evaluate import best_of_n_report, greedy_result, step_search_report

    # Refuse bad overrides before any model work (a typo must not cost a whole run).
    step_overrides = _step_overrides(args)
    model, task, out = _models(args)[0], _task(args), {}
    print(search_defaults_line(model, task), file=sys.stderr)
    for label, problems in _groups(args, args.split):
        shown = args.progress
        row = {"greedy": greedy_result(model, problems, task, progress=shown).as_dict()} if "greedy" in args.methods \
            else {}
        if "best_of_n" in args.methods:
            row |= best_of_n_report(model, problems, args.samples, temperature(args, model), task, progress=shown)
        for method, overrides in step_overrides.items():
            overrides = {"sampling.temperature": temperature(args, model), **overrides}
            row[method] = {**step_search_report(model, problems, method, overrides, task, progress=shown),
                           "overrides": overrides}
        row["paired"] = _paired(row)
        out[label] = row
        _print_search_table(label, row, args.samples)
    if args.out:
        _plot(out, Path(args.out) / "search.png")
    return out


def _step_overrides(args) -> dict[str, dict]:
    """Each asked-for step search's overrides, checked against the config."""
    from reflective_search.experiments.spec import parse_search_settings

    return {m: parse_search_settings(getattr(args, m), f"--{m}", EXAMPLES[m]) for m in STEP_METHODS if m in args.methods}


def _paired(row: dict) -> dict[str, dict]:
    """Every pair of methods with per-problem verdicts: the accuracy difference with its
    paired bootstrap interval (both read the same resampled problems)."""
    from itertools import combinations

    from reflective_search.train.metrics import paired_difference

    judged = [m for m, r in row.items() if isinstance(r, dict) and r.get("correct")]
    return {f"{a} - {b}": paired_difference(row[a]["correct"], row[b]["correct"]) for a, b in combinations(judged, 2)}


def temperature(args, model) -> float:
    """--temperature, else the model's search default, else the library's."""
    from reflective_search.config import SearchConfig

    if args.temperature is not None:
        return args.temperature
    return dict(model.settings.search_defaults).get("sampling.temperature", SearchConfig().sampling.temperature)


def _print_search_table(label: str, row: dict, samples: int) -> None:
    print(f"\n{label}: method | accuracy | generated tokens / problem | s / problem")
    for method, result in row.items():
        if isinstance(result, dict) and "accuracy" in result:
            print(f"  {method:<22} | {result['accuracy']:.3f} | {result['tokens']:.0f} | {result['seconds']:.2f}")
    for method in STEP_METHODS:
        if method in row:
            tree = row[method]
            print(f"  {method} trees: pass@tree {tree['pass@tree']:.3f}  distinct finished paths "
                  f"{tree['finished_paths']:.1f}  duplicate tokens {tree['duplicate_tokens']:.0f} / problem")
    for pair, paired in row.get("paired", {}).items():
        low, high = paired["ci"]
        print(f"  {pair}: {paired['difference']:+.3f} (paired 95% CI [{low:+.3f}, {high:+.3f}])")
    if f"pass@{samples}" not in row:
        return
    steps = f"  step AUC by position {_fmt(row['step_auc_by_position'])}" if "step_auc_by_position" in row else ""
    print(f"  pass@{samples} {row[f'pass@{samples}']:.3f}  trajectory AUC sprm {row['trajectory_auc_sprm']:.3f} "
          f"logprob {row['trajectory_auc_logprob']:.3f}{steps}")


def _plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for label, row in out.items():
        points = [(r["tokens"], r["accuracy"], m) for m, r in row.items() if isinstance(r, dict) and "tokens" in r]
        axes.scatter([p[0] for p in points], [p[1] for p in points], label=label)
        for x, y, method in points:
            axes.annotate(method, (x, y), fontsize=7)
    axes.set_xlabel("generated tokens per problem")
    axes.set_ylabel("accuracy")
    axes.set_xscale("log")
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
