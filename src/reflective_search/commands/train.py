"""``reflective-search train policy|sprm``: reproduce the shipped Countdown model from scratch.

    reflective-search train policy --out runs/policy
    reflective-search train sprm --model runs/policy --out runs/model

The first trains the Llama policy on solver-found solutions; the second samples the
policy's own trajectories on training problems, labels them by final correctness only,
and trains the SPRM head (SPR loss or class-balanced BCE; frozen or joint).
"""

from __future__ import annotations

import argparse
import sys
import time

from reflective_search.commands import check_writable, prepare_output_dir


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train the Countdown policy or its SPRM head")
    which = parser.add_subparsers(dest="which", required=True)
    _register_policy(which.add_parser("policy", help="train the policy from scratch on solver solutions"))
    _register_sprm(which.add_parser("sprm", help="train the SPRM head on the policy's own trajectories"))


def _register_policy(parser: argparse.ArgumentParser) -> None:
    from reflective_search.train.policy import PolicyConfig

    defaults = PolicyConfig()
    parser.add_argument("--out", required=True, help="directory to save the trained policy in")
    parser.add_argument("--steps", type=int, default=defaults.steps, help="optimizer steps")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
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
    parser.add_argument("--feature-layer", type=int, default=defaults.feature_layer,
                        help="decoder layer whose input the head reads (-1: the last, as MetaStone-S1)")
    parser.add_argument("--policy-weight", type=float, default=defaults.policy_weight,
                        help="joint training: weight of the policy loss on correct trajectories")
    parser.add_argument("--backbone-learning-rate", type=float, default=defaults.backbone_learning_rate,
                        help="joint training: the backbone's AdamW learning rate")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="trajectories per step")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--problems", type=int, default=2000, help="training problems to sample on")
    parser.add_argument("--samples", type=int, default=4, help="trajectories sampled per problem")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (see docs/countdown.md)")
    parser.add_argument("--numbers", type=int, nargs="+", default=[3, 4], choices=range(2, 6), metavar="N",
                        help="number counts of the problems (2-5)")
    parser.add_argument("--trajectories", help="a JSONL file of trajectories: reused if it exists, else written")
    parser.add_argument("--sampler", choices=["generate", "search"], default="generate",
                        help="draw the samples with transformers' generate (the shipped head's data) or through "
                             "the search engine (7-9x faster here; exactly the distribution search samples)")
    parser.add_argument("--executor", choices=["local", "ray"], default="local",
                        help="where --sampler search draws the trajectories: this machine, or a Ray cluster")
    parser.add_argument("--address", default=None,
                        help='with --executor ray: "auto" or host:port of the cluster (default: a private local Ray)')
    parser.add_argument("--workers", type=int, default=1, help="sampling workers, each with its own model copy")
    parser.add_argument("--labels", choices=["outcome", "steps"], default=defaults.labels,
                        help="outcome: final-answer correctness (the SPRM's only signal); steps: the step "
                             "checker's labels, a diagnostic upper bound that no shipped head may use")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.set_defaults(func=run_sprm)


def run_policy(args: argparse.Namespace) -> int:
    import torch

    from reflective_search.train.policy import PolicyConfig, train_policy

    torch.set_num_threads(1)
    prepare_output_dir(args.out, "--out")
    config = PolicyConfig(
        hidden_size=args.hidden_size, layers=args.layers, heads=args.heads,
        intermediate_size=args.intermediate_size, steps=args.steps, batch_size=args.batch_size,
        learning_rate=args.learning_rate, seed=args.seed, max_minutes=args.max_minutes,
        stop_after=args.stop_after,
    )
    start = time.perf_counter()
    model = train_policy(config, checkpoint=lambda m, step: m.save_pretrained(args.out))
    model.save_pretrained(args.out)
    print(f"policy: {model.num_parameters:,} parameters, trained in {time.perf_counter() - start:.0f} s, "
          f"saved to {args.out}")
    return 0


def run_sprm(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from reflective_search.model.reflective import ReflectiveModel
    from reflective_search.train.sprm import (
        HeadConfig, load_trajectories, sample_trajectories, sample_with_search, save_trajectories, train_head,
        training_problems,
    )

    torch.set_num_threads(1)
    prepare_output_dir(args.out, "--out")
    if args.trajectories and not Path(args.trajectories).is_file():
        check_writable(args.trajectories, "--trajectories")
    model = ReflectiveModel.from_pretrained(args.model)
    start = time.perf_counter()
    if args.trajectories and Path(args.trajectories).is_file():
        trajectories = load_trajectories(model, args.trajectories)
    else:
        problems = training_problems(args.problems, args.numbers, args.seed)
        sample = _executor_sampler(args) or (sample_with_search if args.sampler == "search" else sample_trajectories)
        trajectories = sample(model, problems, args.samples, args.temperature, seed=args.seed)
        if args.trajectories:
            save_trajectories(trajectories, args.trajectories)
    correct = sum(t.correct for t in trajectories)
    print(f"trajectories: {len(trajectories)} ({correct} correct) in {time.perf_counter() - start:.0f} s",
          file=sys.stderr)
    config = HeadConfig(loss=args.loss, backbone_scale=args.backbone_scale, epochs=args.epochs,
                        learning_rate=args.learning_rate, feature_layer=args.feature_layer,
                        policy_weight=args.policy_weight, backbone_learning_rate=args.backbone_learning_rate,
                        batch_size=args.batch_size, labels=args.labels, seed=args.seed)
    model = train_head(model, trajectories, config)
    model.save_pretrained(args.out)
    print(f"head trained ({args.loss} on {args.labels} labels, backbone scale {args.backbone_scale}) in "
          f"{time.perf_counter() - start:.0f} s, saved to {args.out}")
    return 0


def _executor_sampler(args: argparse.Namespace):
    """``--executor ray`` or ``--workers N``: a sampler drawing on the executor's workers (None: in process)."""
    from reflective_search.errors import ConfigError
    from reflective_search.experiments.spec import ExecutorSpec, resolve_model
    from reflective_search.train.executor_sampling import sample_on_executor

    if args.executor == "local" and args.workers == 1 and args.address is None:
        return None
    if args.sampler != "search":
        raise ConfigError("--executor and --workers draw through the search engine: add --sampler search")
    if args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: give 1 or more")
    if args.address is not None and args.executor != "ray":
        raise ConfigError("--address applies to a Ray cluster: add --executor ray")
    executor = ExecutorSpec(kind=args.executor, address=args.address, workers=args.workers)
    model_ref = resolve_model(args.model)
    return lambda model, problems, samples, temperature, seed: sample_on_executor(
        executor, model_ref, problems, samples, temperature, seed=seed)
