"""Solve a Countdown problem with MCTS, then look at the search: an HTML viewer and a PNG.

    python examples/solve_and_visualise.py --out runs/viz
    # open runs/viz/tree.html in any browser: one offline file, nothing is fetched

Uses the shipped model (or a tiny random one when none ships: its steps are noise).
"""

import argparse
from pathlib import Path

import torch

from reflective_search import ReflectiveSearch
from reflective_search.default_model import load_default_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="Numbers: 3 7 8. Target: 29.")
    parser.add_argument("--out", default="runs/solve_and_visualise", help="folder for tree.json/.html/.png")
    parser.add_argument("--tokens", type=int, default=2048, help="MCTS budget in generated tokens")
    parser.add_argument("--max-step-tokens", type=int, default=32, help="a step is cut after this many tokens")
    parser.add_argument("--model", help="a model name or folder (default: the shipped model)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    model = load_default_model(args.model)
    config = {
        "method": "mcts",
        "record_history": True,  # snapshots per round: the viewer's slider replays the search
        "budget": {"tokens": args.tokens},
        "sampling": {"max_step_tokens": args.max_step_tokens, "max_steps": 6},
    }
    solution = ReflectiveSearch(model, config).solve(args.problem)
    tree = solution.tree

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tree.to_json(out / "tree.json")  # reload with Tree.from_json; `reflective-search viz` reads it
    tree.to_html(out / "tree.html", title=args.problem)
    tree.to_png(out / "tree.png", title=f"MCTS on {args.problem}")

    stats = solution.stats
    print(f"answer: {solution.answer}  (score {solution.score:.3f})")
    print(f"tree: {tree.size} nodes, {len(tree.history)} rounds; {stats.generated_tokens} tokens generated "
          f"in {stats.seconds:.1f} s")
    print(f"wrote {out / 'tree.html'} and {out / 'tree.png'}")


if __name__ == "__main__":
    main()
