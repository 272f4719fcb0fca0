"""Entry point: ``python -m reflective_search.bench expander|tree|methods|finetune|smol|agreement|kernels [--json] [...]``."""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reflective_search.bench")
    sub = parser.add_subparsers(dest="which", required=True)
    expander = sub.add_parser("expander", help="shared-KV expander vs generate vs batched recompute")
    expander.add_argument("--device", default="cpu", help="cpu or cuda (cuda: bf16, fused SDPA)")
    expander.add_argument("--repeats", type=int, default=3)
    expander.add_argument("--prompt-tokens", type=int, default=1024)
    tree = sub.add_parser("tree", help="numba vs Python PUCT selection + backup")
    tree.add_argument("--nodes", type=int, default=100_000)
    tree.add_argument("--repeats", type=int, default=3)
    methods = sub.add_parser("methods", help="what each search method costs (tokens, seconds)")
    methods.add_argument("--model", help="a model folder or shipped name (default: the shipped model)")
    finetune = sub.add_parser("finetune", help="fine-tuning tokens/s: LoRA vs full, bf16 autocast vs fp32")
    finetune.add_argument("--base", default="smollm2-135m-instruct", help="a base model's name or folder")
    finetune.add_argument("--steps", type=int, default=3, help="measured steps per variant (after one warm-up)")
    smol = sub.add_parser("smol", help="the engine on SmolLM2-135M vs plain decode, reference and generate")
    smol.add_argument("--repeats", type=int, default=3)
    smol.add_argument("--problems", type=int, default=16, help="Countdown problems for Best-of-8, beam and MCTS")
    agreement = sub.add_parser("agreement", help="shared vs reference expander on a device: same answers, speed")
    agreement.add_argument("--device", default="cpu", help="cpu or cuda")
    agreement.add_argument("--model", default="countdown-tiny", help="a model folder or shipped name")
    agreement.add_argument("--problems", type=int, default=64, help="held-out problems (3 numbers)")
    kernels = sub.add_parser("kernels", help="small-batch linear layers vs torch's on the shipped model (CPU)")
    kernels.add_argument("--model", help="a model folder or shipped name (default: the shipped model)")
    kernels.add_argument("--repeats", type=int, default=3)
    for p in (expander, tree, methods, finetune, smol, agreement, kernels):
        p.add_argument("--json", action="store_true", help="print one JSON object (default: a readable table)")
    args = parser.parse_args(argv)
    if args.which == "expander":
        from reflective_search.bench.expander import run_expander_bench

        result = run_expander_bench(device=args.device, repeats=args.repeats, prompt_tokens=args.prompt_tokens)
    elif args.which == "tree":
        from reflective_search.bench.tree import run_tree_bench

        result = run_tree_bench(nodes=args.nodes, repeats=args.repeats)
    elif args.which == "finetune":
        from reflective_search.bench.finetune import run_finetune_bench

        result = run_finetune_bench(args.base, steps=args.steps)
    elif args.which == "agreement":
        from reflective_search.bench.agreement import run_agreement_bench

        result = run_agreement_bench(args.device, args.model, args.problems)
    elif args.which == "kernels":
        from reflective_search.bench.kernels import run_kernels_bench

        result = run_kernels_bench(args.model, repeats=args.repeats)
    elif args.which == "smol":
        from reflective_search.bench.smol import run_smol_bench

        result = run_smol_bench(repeats=args.repeats, problems=args.problems)
    else:
        from reflective_search.bench.methods import run_methods_bench

        result = run_methods_bench(args.model)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
