"""The model card ``train policy`` and ``train sprm`` write over a saved folder's plain one:
what was trained, on what, with which command (local paths made portable), and the summary."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def save_card(args: argparse.Namespace, what: str, rows: list, base: str | None, carried: tuple[bool, tuple],
              note: str = "") -> None:
    """Replace the saved folder's plain card with one that says what was trained (``what``, a
    sentence), with which command, and its summary (``rows``). ``carried``: (whether the head
    is trained, the search defaults the model carries); ``note``: where those came from."""
    from reflective_search.model.card import (
        Card, head_section, portable_command, search_defaults_section, training_section, usage_section, write_card,
    )
    from reflective_search.model.checkpoint import ADAPTER_FILE

    title = Path(args.out).resolve().name
    command = portable_command(getattr(args, "argv", None) or sys.argv[1:])
    task = args.task or ("countdown" if args.problems == "countdown" or args.problems.isdigit() else "math")
    adapter = (Path(args.out) / ADAPTER_FILE).is_file()
    tags = (task, *(("lora",) if adapter else ()))
    trained, defaults = carried
    sections = (training_section(command, rows), head_section(trained),
                search_defaults_section(defaults, note), usage_section(title))
    write_card(args.out, Card(title, what + ".", base, adapter, tags, sections))


def scratch_sentence(parameters: int) -> str:
    return (f"A Countdown policy trained from scratch: a Llama of {parameters:,} parameters over a character "
            "tokenizer, on solutions found by a solver on problems from the Countdown generator")


def scratch_rows(config, seconds: float) -> list[tuple[str, object]]:
    """A from-scratch run's summary (``config``: its PolicyConfig)."""
    rows = [("steps", config.stop_after or config.steps), ("batch size", config.batch_size),
            ("peak learning rate", config.learning_rate), ("time", f"{seconds:.0f} s")]
    return rows + ([("time limit", f"{config.max_minutes} min")] if config.max_minutes else [])


def finetune_sentence(args: argparse.Namespace, summary: dict, task: str) -> str:
    from reflective_search.model.card import base_label

    kind = f"LoRA (rank {args.lora})" if args.lora else "full"
    base = base_label(summary["base"]) if summary["base"] else f"`{Path(args.base).name}`"
    return (f"A policy for the `{task}` task: a {kind} fine-tune of {base} on the worked "
            f"solutions of {problems_text(args.problems, args.numbers)}")


def finetune_rows(summary: dict) -> list[tuple[str, object]]:
    config = summary["config"]
    held_out = summary["held_out_examples"]
    rows = [("steps", summary["steps_done"]), ("batch size", config["batch_size"]),
            ("peak learning rate", config["learning_rate"])]
    if held_out:
        rows.append((f"held-out loss ({held_out} solution{'s' * (held_out > 1)})", f"{summary['held_out_loss']:.4f}"))
    return rows + [("tokens", f"{summary['tokens']:,} ({summary['tokens_per_s']:,.0f} tokens/s)"),
                   ("time", f"{summary['seconds']:.0f} s")]


def limits_note(summary: dict) -> str:
    """How the step limits were drawn from a file's solutions (empty: they were not)."""
    from reflective_search.train.step_limits import EXTRA_STEPS, HEADROOM, ROUND_TO

    limits = summary.get("step_limits")
    if not limits:
        return ""
    return (f"the step limits fit the training solutions: the longest step, {limits['longest_step_tokens']} tokens, "
            f"times {HEADROOM} rounded up to a multiple of {ROUND_TO}; the most steps, {limits['most_steps']}, "
            f"plus {EXTRA_STEPS}; never below the task's own")


def head_sentence(args: argparse.Namespace, source: str, sampled: tuple[int, int]) -> str:
    labels = "final-answer correctness" if args.labels == "outcome" else "the task's step checker"
    drawn = (f"trajectories from `{Path(args.trajectories).name}`" if args.trajectories else
             f"trajectories sampled on {problems_text(source, args.numbers)}")
    return (f"The policy `{Path(args.model).name}` with an SPRM head trained on {sampled[0]} of its own {drawn} "
            f"({sampled[1]} correct), labelled by {labels}")


def head_rows(args: argparse.Namespace, config, sampled: tuple[int, int], seconds: float) -> list:
    rows = [("trajectories", f"{sampled[0]} ({sampled[1]} correct)")]
    if args.contrast:
        rows.append(("contrast pairs", args.contrast))
    backbone = "frozen" if config.backbone_scale == 0 else f"trained, gradient scale {config.backbone_scale}"
    return rows + [("loss", config.loss), ("labels", config.labels), ("backbone", backbone),
                   ("feature layers", " ".join(map(str, config.feature_layers))), ("epochs", config.epochs),
                   ("learning rate", config.learning_rate), ("time", f"{seconds:.0f} s")]


def problems_text(problems: str, numbers) -> str:
    """How a card names the problems trained on (a file by its name only)."""
    if problems == "countdown" or problems.isdigit():
        return f"problems from the Countdown generator ({'/'.join(map(str, numbers))} numbers)"
    return f"`{Path(problems).name}`"
