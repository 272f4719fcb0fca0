"""``reflective-search solve PROBLEM``: search for one answer and print it."""

from __future__ import annotations

import argparse
import json
import sys

from reflective_search.config import METHODS
from reflective_search.commands import add_command, search_defaults_line


def register(subparsers) -> None:
    parser = add_command(subparsers, "solve", "solve one problem with search",
                         "Prints the answer, its score and the compute spent; for a Countdown problem, also "
                         "whether the answer reaches the target.")
    parser.add_argument("problem", help="the problem text")
    parser.add_argument("--config", help="a search config YAML (overrides of the defaults)")
    parser.add_argument("--method", choices=METHODS)
    parser.add_argument("--model", help="a saved model directory, a shipped model's or a base model's name "
                                         "(default: the shipped model)")
    parser.add_argument("--tree", metavar="OUT.json", help="also write the search tree as JSON")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from reflective_search.config import load_search_config, to_dict
    from reflective_search.default_model import load_default_model
    from reflective_search.facade import ReflectiveSearch

    torch.set_num_threads(1)
    from reflective_search.model.reflective import check_problem

    check_problem(args.problem)  # refuse bad input before loading a model
    if args.tree:
        from reflective_search.commands import check_writable

        check_writable(args.tree, "--tree")
    config = load_search_config(args.config)
    if args.method:
        config = config.replace(method=args.method)
    model = load_default_model(args.model)
    print(search_defaults_line(model), file=sys.stderr)
    search = ReflectiveSearch(model, config)
    config = search.config  # with the model's own search defaults layered in
    solution = search.solve(args.problem)
    if args.tree:
        solution.tree.to_json(args.tree)
    stats = solution.stats
    result = {
        "answer": solution.answer, "score": round(solution.score, 4), "method": solution.method,
        "verdict": _verdict(args.problem, solution.text),
        "generated_tokens": stats.generated_tokens, "forwarded_tokens": stats.forwarded_tokens,
        "expansions": stats.expansions, "seconds": round(stats.seconds, 3),
        "cpu_seconds": round(stats.cpu_seconds, 3), "unspent_tokens": stats.unspent_tokens,
        "duplicate_tokens": stats.duplicate_tokens,
        "greedy": None if solution.method == "greedy" else _greedy(model, config, args.problem),
        "path_score": round(_path_score(solution, config), 4),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"answer: {solution.answer}\nscore: {result['score']}\nmethod: {solution.method}")
        if result["verdict"]:
            print(f"verdict: {result['verdict']}")
        duplicates = f" ({stats.duplicate_tokens} in duplicate siblings, merged)" if stats.duplicate_tokens else ""
        print(f"compute: {stats.generated_tokens} generated tokens{duplicates}, {stats.forwarded_tokens} forwarded, "
              f"{stats.expansions} expansions, {result['seconds']} s")
        if result["greedy"]:
            print(_head_line(result))
    return 0


def _greedy(model, config, problem: str) -> dict:
    """Greedy decoding's answer, and its path scored by the head as the search scores its pick,
    to set the two against each other (the head at work)."""
    from reflective_search.facade import ReflectiveSearch

    greedy = ReflectiveSearch(model, config.replace(method="greedy")).solve(problem)
    return {"answer": greedy.answer, "score": round(_path_score(greedy, config), 4),
            "verdict": _verdict(problem, greedy.text), "generated_tokens": greedy.stats.generated_tokens}


def _path_score(solution, config) -> float:
    """The head's score of the solution's path, aggregated as ``config``'s method ranks finished
    paths (the geometric mean for a method with no aggregate of its own, such as majority)."""
    from reflective_search.search.common import trajectory_score

    aggregate = getattr(getattr(config, config.method, None), "aggregate", "geometric")
    return trajectory_score(solution.tree, solution.tree.chosen, aggregate)


def _head_line(result: dict) -> str:
    greedy = result["greedy"]
    verdict = f", {greedy['verdict'].split(':')[0]}" if greedy["verdict"] else ""
    return (f"head: the chosen path scores {result['path_score']}; greedy decoding's path scores {greedy['score']} "
            f"(answer {greedy['answer']}{verdict}; {greedy['generated_tokens']} more tokens, not counted above)")


def _verdict(problem: str, response: str) -> str | None:
    """The built-in task's verdict (Countdown, arithmetic); None for any other problem."""
    from reflective_search.tasks import verdict

    return verdict(problem, response)
