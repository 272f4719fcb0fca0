"""Best-of-N and MCTS on the same problem at the same token budget, side by side.

    python examples/compare_methods.py --n 8 --out runs/compare

Best-of-N runs first; MCTS then gets as many generated tokens as Best-of-N spent.
"""

import argparse
from pathlib import Path

import torch

from reflective_search import ReflectiveSearch
from reflective_search.default_model import load_default_model
from reflective_search.viz.png import trees_to_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="Numbers: 4 6 9. Target: 33.")
    parser.add_argument("--n", type=int, default=8, help="Best-of-N samples")
    parser.add_argument("--max-step-tokens", type=int, default=32, help="a step is cut after this many tokens")
    parser.add_argument("--out", default="runs/compare_methods", help="folder for compare.png")
    parser.add_argument("--model", help="a model name or folder (default: the shipped model)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    model = load_default_model(args.model)
    sampling = {"max_step_tokens": args.max_step_tokens, "max_steps": 6}
    best_of_n = ReflectiveSearch(model, {"method": "best_of_n", "best_of_n": {"n": args.n}, "sampling": sampling})
    bon = best_of_n.solve(args.problem)
    budget = {"tokens": max(bon.stats.generated_tokens, 1)}  # equal compute
    mcts = ReflectiveSearch(model, {"method": "mcts", "budget": budget, "sampling": sampling}).solve(args.problem)

    print(f"{'method':<11}{'answer':>12}{'score':>8}{'generated':>11}{'forwarded':>11}{'nodes':>7}{'seconds':>9}")
    for s in (bon, mcts):
        print(f"{s.method:<11}{str(s.answer):>12}{s.score:>8.3f}{s.stats.generated_tokens:>11}"
              f"{s.stats.forwarded_tokens:>11}{s.tree.size:>7}{s.stats.seconds:>9.2f}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    titles = [f"{s.method}: answer {s.answer}, score {s.score:.3f}" for s in (bon, mcts)]
    trees_to_image([bon.tree, mcts.tree], out / "compare.png", titles=titles, size=(1800, 900))
    print(f"wrote {out / 'compare.png'}")


if __name__ == "__main__":
    main()
