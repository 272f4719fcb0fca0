"""``reflective-search train policy|sprm``: any causal LM in, a reflective model out.

    reflective-search train policy --base smollm2-135m-instruct --problems countdown --out runs/policy
    reflective-search train sprm --model runs/policy --problems countdown --out runs/model

The first fine-tunes a base model (a named base or a saved folder; LoRA or full) on
worked solutions, with the prompt exactly as the search formats it; without ``--base``
it trains the tiny Countdown Llama from scratch (how ``countdown-tiny`` was made). The
second samples the policy's own trajectories through the search engine, labels them by
final correctness only, and trains the SPRM head (SPR loss or class-balanced BCE;
frozen or joint).
"""

from __future__ import annotations

import argparse
import sys
import time

from reflective_search.commands import add_command, check_writable, prepare_output_dir, train_card


def register(subparsers) -> None:
    parser = add_command(subparsers, "train", "train a policy or its SPRM head",
                         "Running train policy and then train sprm turns a pretrained model (or, without --base, "
                         "a tiny one trained from scratch) into a reflective model.")
    which = parser.add_subparsers(dest="which", required=True)
    _register_policy(add_command(which, "policy", "fine-tune a base model on worked solutions",
                                 "LoRA or full fine-tuning of any causal LM, resumable; without --base, the tiny "
                                 "Countdown Llama is trained from scratch."))
    _register_sprm(add_command(which, "sprm", "train the SPRM head on the policy's own trajectories",
                               "Samples the policy on training problems, labels each trajectory by its final "
                               "answer's correctness, and trains the head."))


def _register_policy(parser: argparse.ArgumentParser) -> None:
    from reflective_search.train.policy import PolicyConfig

    from reflective_search.train.finetune import FinetuneConfig

    defaults, tuned = PolicyConfig(), FinetuneConfig()
    parser.add_argument("--out", required=True, help="directory to save the trained policy in")
    parser.add_argument("--base", help="a base model's name (e.g. smollm2-135m-instruct) or a saved model folder "
                                       "to fine-tune (a LoRA model goes on training its own adapter); omitted: train the "
                                       "tiny Countdown Llama from scratch")
    parser.add_argument("--problems", default="countdown",
                        help="countdown (the generator, solutions along random solver paths) or a JSONL file of "
                             "records with 'problem' and 'solution' (or a trajectories file of train sprm, whose "
                             "correct responses become the solutions: expert iteration)")
    parser.add_argument("--task", choices=["countdown", "math", "arithmetic"],
                        help="the task the model is trained for (default: countdown for the generator, math for a file)")
    parser.add_argument("--lora", type=int, default=16, metavar="RANK",
                        help="LoRA rank on every linear map (0: full fine-tuning); with --base only")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (fast on CPUs with AVX-512 BF16)")
    parser.add_argument("--adapter-dtype", choices=["fp32", "bf16"], default="fp32",
                        help="storage of a saved LoRA adapter (bf16: half the size; merged into fp32 weights on "
                             "load). Re-running a finished run's command saves again")
    parser.add_argument("--checkpoint-every", type=int, default=tuned.checkpoint_every,
                        help="steps between checkpoints (a killed run resumes from the last one)")
    parser.add_argument("--numbers", type=int, nargs="+", default=[3], choices=range(2, 6), metavar="N",
                        help="countdown: number counts of the training problems (2-5)")
    parser.add_argument("--held-out", type=int, default=64,
                        help="examples kept apart to report a held-out loss (countdown: validation problems)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="peak learning rate (default: from scratch 2e-3, full 1e-4, LoRA 1e-3)")
    parser.add_argument("--hidden-size", type=int, default=defaults.hidden_size)
    parser.add_argument("--layers", type=int, default=defaults.layers)
    parser.add_argument("--heads", type=int, default=defaults.heads)
    parser.add_argument("--intermediate-size", type=int, default=defaults.intermediate_size)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--max-minutes", type=float, default=None, help="stop early after this wall time")
    parser.add_argument("--stop-after", type=int, default=None,
                        help="stop after this many steps with the --steps schedule (reproduces a time-capped run)")
    parser.set_defaults(func=run_policy)


def _register_sprm(parser: argparse.ArgumentParser) -> None:
    from reflective_search.train.sprm import HeadConfig

    defaults = HeadConfig()
    parser.add_argument("--model", required=True, help="the trained policy (a saved model directory)")
    parser.add_argument("--out", required=True, help="directory to save the policy with its trained head in")
    parser.add_argument("--loss", choices=["spr", "bce"], default=defaults.loss)
    parser.add_argument("--backbone-scale", type=float, default=defaults.backbone_scale,
                        help="gradient scale reaching the backbone (0: frozen features; MetaStone-S1: 1e-4)")
    parser.add_argument("--feature-layers", "--feature-layer", type=int, nargs="+", default=list(defaults.feature_layers),
                        metavar="LAYER", help="decoder layers whose inputs the head reads, concatenated "
                        "(-1: the last, as MetaStone-S1; e.g. 20 -1 adds a middle layer)")
    parser.add_argument("--policy-weight", type=float, default=defaults.policy_weight,
                        help="joint training: weight of the policy loss on correct trajectories")
    parser.add_argument("--backbone-learning-rate", type=float, default=defaults.backbone_learning_rate,
                        help="joint training: the backbone's AdamW learning rate")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="trajectories per step")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--problems", default="countdown",
                        help="countdown (the generator) or a JSONL file of records with 'problem' and 'answer' "
                             "(a bare number N is short for N countdown problems)")
    parser.add_argument("--count", type=int, default=2000, help="problems to sample on (a file: its first N; 0: all)")
    parser.add_argument("--task", choices=["countdown", "math", "arithmetic"],
                        help="how trajectories are checked (default: countdown for the generator, math for a file)")
    parser.add_argument("--samples", type=int, default=4, help="trajectories sampled per problem")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    parser.add_argument("--numbers", type=int, nargs="+", default=[3, 4], choices=range(2, 6), metavar="N",
                        help="number counts of the problems (2-5)")
    parser.add_argument("--trajectories", help="a JSONL file of trajectories: reused if it exists, else written")
    parser.add_argument("--sampler", choices=["generate", "search"], default="search",
                        help="draw the samples through the search engine (7-9x faster here; exactly the distribution "
                             "search samples) or with transformers' generate (how countdown-tiny's head was trained)")
    parser.add_argument("--executor", choices=["local", "ray"], default="local",
                        help="where --sampler search draws the trajectories: this machine, or a Ray cluster")
    parser.add_argument("--address", default=None,
                        help='with --executor ray: "auto" or host:port of the cluster (default: a private local Ray)')
    parser.add_argument("--workers", type=int, default=1,
                        help="workers that sample and read a frozen head's features, each with its own model copy")
    parser.add_argument("--labels", choices=["outcome", "steps"], default=defaults.labels,
                        help="outcome: final-answer correctness (the SPRM's only signal); steps: the step "
                             "checker's labels, a diagnostic upper bound that no shipped head may use")
    parser.add_argument("--contrast", type=int, default=0, metavar="N",
                        help="also train on N generated pairs of a correct and a faked solution (true moves to a dead "
                             "end, then a false equation claiming the target), labelled by the checker like any sample: "
                             "hard negatives from the task's training stream (countdown only)")
    parser.add_argument("--standardise", action="store_true",
                        help="frozen heads: standardise the features (their training mean and std are saved with the head)")
    parser.add_argument("--search", nargs="+", default=[], metavar="KEY=VALUE",
                        help="search settings the saved model carries (its search defaults, used by solve, run and "
                             "evaluate unless a config overrides them), e.g. mcts.c_puct=1.0 budget.tokens=300")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bars for sampling and the feature pass (shown only on a terminal, on stderr)")
    parser.set_defaults(func=run_sprm)


def run_policy(args: argparse.Namespace) -> int:
    import torch

    from reflective_search.train.policy import PolicyConfig, train_policy

    torch.set_num_threads(1)
    prepare_output_dir(args.out, "--out")
    if args.base is not None:
        return run_finetune(args)
    defaults = PolicyConfig()
    config = PolicyConfig(
        hidden_size=args.hidden_size, layers=args.layers, heads=args.heads,
        intermediate_size=args.intermediate_size, steps=args.steps or defaults.steps,
        batch_size=args.batch_size or defaults.batch_size, learning_rate=args.learning_rate or defaults.learning_rate,
        seed=args.seed, max_minutes=args.max_minutes, stop_after=args.stop_after,
    )
    start = time.perf_counter()
    model = train_policy(config, checkpoint=lambda m, step: m.save_pretrained(args.out))
    model.save_pretrained(args.out)
    seconds = time.perf_counter() - start
    train_card.save_card(args, train_card.scratch_sentence(model.num_parameters),
                         train_card.scratch_rows(config, seconds), None,
                         (model.settings.head_trained, model.settings.search_defaults))
    print(f"policy: {model.num_parameters:,} parameters, trained in {seconds:.0f} s, saved to {args.out}")
    return 0


def run_finetune(args: argparse.Namespace) -> int:
    """``train policy --base``: fine-tune a base model on worked solutions (resumable)."""
    import json
    from pathlib import Path

    from reflective_search.train.finetune import finetune_policy

    task = args.task or ("countdown" if args.problems == "countdown" else "math")
    config = finetune_config(args)
    import torch

    dtype = {"fp32": None, "bf16": torch.bfloat16}[args.adapter_dtype]
    summary = finetune_policy(args.base, args.problems, task, config, Path(args.out), args.numbers, args.held_out,
                              dtype)
    (Path(args.out) / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    train_card.save_card(args, train_card.finetune_sentence(args, summary, task), train_card.finetune_rows(summary),
                         summary["base"], (False, tuple(summary["search_defaults"].items())),
                         note=train_card.limits_note(summary))
    print(f"policy: {summary['kind']} fine-tune of {args.base}, {summary['steps_done']} steps, "
          f"{summary['tokens_per_s']} tokens/s, held-out loss {summary['held_out_loss']:.4f}, saved to {args.out}")
    return 0












def finetune_config(args: argparse.Namespace):
    """The FinetuneConfig that ``train policy --base`` options ask for (unset ones: its defaults)."""
    from reflective_search.train.finetune import FinetuneConfig

    defaults = FinetuneConfig()
    return FinetuneConfig(
        steps=args.steps or defaults.steps, batch_size=args.batch_size or defaults.batch_size,
        learning_rate=args.learning_rate or (1e-3 if args.lora else 1e-4), lora_rank=args.lora, bf16=args.bf16,
        checkpoint_every=args.checkpoint_every, max_minutes=args.max_minutes, seed=args.seed,
    )


def run_sprm(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from reflective_search.model.reflective import ReflectiveModel
    from reflective_search.train.sprm import (
        HeadConfig, check_both_classes, contrast_trajectories, load_trajectories, require_contrast,
        sample_trajectories, sample_with_search, save_trajectories, train_head,
    )
    from reflective_search.train.finetune import with_defaults
    from reflective_search.train.tasks import get_task, load_problems

    torch.set_num_threads(1)
    chosen = search_settings(args.search)  # a bad setting fails before any work
    source, count = ("countdown", int(args.problems)) if args.problems.isdigit() else (args.problems, args.count)
    task = get_task(args.task or ("countdown" if source == "countdown" else "math"))
    require_contrast(task, args.contrast)
    prepare_output_dir(args.out, "--out")
    if args.trajectories and not Path(args.trajectories).is_file():
        check_writable(args.trajectories, "--trajectories")
    executor = _executor(args)  # bad executor flags fail before any work
    reuse = bool(args.trajectories) and Path(args.trajectories).is_file()
    problems = None if reuse else load_problems(source, count, args.numbers, args.seed, need="answer" if
                                                task.name == "math" else None)  # bad files fail before loading
    model = ReflectiveModel.from_pretrained(args.model)
    start = time.perf_counter()
    if reuse:
        trajectories = load_trajectories(model, args.trajectories)
    else:
        sample = _on_executor(executor, args) if executor else \
            (sample_with_search if args.sampler == "search" else sample_trajectories)
        trajectories = sample(model, problems, args.samples, args.temperature, seed=args.seed, task=task,
                              progress=args.progress)
        if args.trajectories:
            save_trajectories(trajectories, args.trajectories)
    sampled = (len(trajectories), sum(t.correct for t in trajectories))  # (count, correct) of its own
    print(f"trajectories: {sampled[0]} ({sampled[1]} correct) in {time.perf_counter() - start:.0f} s",
          file=sys.stderr)
    if args.contrast:
        pairs = contrast_trajectories(model, task, args.contrast, args.numbers, args.seed)
        print(f"contrast pairs: {args.contrast} ({sum(t.correct for t in pairs)} of {len(pairs)} trajectories correct)",
              file=sys.stderr)
        trajectories = [*trajectories, *pairs]
    check_both_classes(trajectories)
    config = HeadConfig(loss=args.loss, backbone_scale=args.backbone_scale, epochs=args.epochs,
                        learning_rate=args.learning_rate, feature_layers=tuple(args.feature_layers),
                        policy_weight=args.policy_weight, backbone_learning_rate=args.backbone_learning_rate,
                        batch_size=args.batch_size, labels=args.labels, seed=args.seed, standardise=args.standardise)
    # the settings first: the head is trained on the steps the saved model will search with
    model = train_head(with_defaults(model, chosen), trajectories, config, task=task,
                       read_features=_features_on(executor, args) if executor else _features_here(args))
    model.save_pretrained(args.out)
    seconds = time.perf_counter() - start
    train_card.save_card(args, train_card.head_sentence(args, source, sampled),
                         train_card.head_rows(args, config, sampled, seconds), model.base_name,
                         (True, model.settings.search_defaults))
    print(f"head trained ({args.loss} on {args.labels} labels, backbone scale {args.backbone_scale}) in "
          f"{seconds:.0f} s, saved to {args.out}")
    return 0






def search_settings(options: list[str]) -> dict:
    """``--search KEY=VALUE`` options as dotted keys, checked against the search config."""
    from reflective_search.experiments.spec import parse_search_settings

    return parse_search_settings(options, "--search", "mcts.c_puct=1.0")


def _executor(args: argparse.Namespace):
    """``--executor ray`` or ``--workers N``: the executor that samples and reads frozen
    features (None: this process)."""
    from reflective_search.errors import ConfigError
    from reflective_search.experiments.spec import ExecutorSpec

    if args.executor == "local" and args.workers == 1 and args.address is None:
        return None
    if args.sampler != "search":
        raise ConfigError("--executor and --workers draw through the search engine: drop --sampler generate")
    if args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: give 1 or more")
    if args.address is not None and args.executor != "ray":
        raise ConfigError("--address applies to a Ray cluster: add --executor ray")
    return ExecutorSpec(kind=args.executor, address=args.address, workers=args.workers)


def _on_executor(executor, args: argparse.Namespace):
    """A sampler drawing on the executor's workers."""
    from reflective_search.experiments.spec import resolve_model
    from reflective_search.train.executor_sampling import sample_on_executor

    model_ref = resolve_model(args.model)
    return lambda model, problems, samples, temperature, seed, task, progress: sample_on_executor(
        executor, model_ref, problems, samples, temperature, seed=seed, task=task, progress=progress)


def _features_on(executor, args: argparse.Namespace):
    """A frozen-feature reader on the executor's workers (each loads --model's backbone)."""
    from reflective_search.experiments.spec import resolve_model
    from reflective_search.train.executor_sampling import features_on_executor

    model_ref = resolve_model(args.model)
    return lambda model, trajectories: features_on_executor(executor, model_ref, model, trajectories,
                                                            progress=args.progress)


def _features_here(args: argparse.Namespace):
    """The frozen-feature reader in this process, with or without its progress bar."""
    from reflective_search.train.step_features import prompt_shared_features

    return lambda model, trajectories: prompt_shared_features(model, trajectories, progress=args.progress)