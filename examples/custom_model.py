"""Attach a fresh SPRM head to any Hugging Face causal LM and search with it.

    python examples/custom_model.py --out runs/custom_model

The head is untrained (scores near 0.5) until you train it on your model's own samples.
"""

import argparse

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from reflective_search import ModelSettings, ReflectiveModel, ReflectiveSearch
from reflective_search.model.tiny import TINY_CORPUS
from reflective_search.model.tokenizer import train_bpe_tokenizer


def load_backbone():
    """Your model goes here. With a hub (or a local folder) you would write:

        from transformers import AutoModelForCausalLM, AutoTokenizer
        tokenizer = AutoTokenizer.from_pretrained("Qwen/Qwen2.5-Math-1.5B-Instruct")
        backbone = AutoModelForCausalLM.from_pretrained("Qwen/Qwen2.5-Math-1.5B-Instruct", torch_dtype="auto")

    Offline, this builds a small random Llama over a byte-level BPE trained on a few lines.
    """
    tokenizer = train_bpe_tokenizer(TINY_CORPUS, vocab_size=320)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=96, intermediate_size=192, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval(), tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="Compute 5*6-4.")
    parser.add_argument("--out", help="also save the model here (HF layout + sprm_head.safetensors) and reload it")
    parser.add_argument("--max-step-tokens", type=int, default=24, help="a step is cut after this many tokens")
    args = parser.parse_args()
    torch.set_num_threads(1)

    backbone, tokenizer = load_backbone()
    # Steps end at ".\n\n"; the head reads the input of the last decoder layer.
    model = ReflectiveModel.from_backbone(backbone, tokenizer, ModelSettings(delimiters=(".\n\n",)), seed=0)
    head_parameters = sum(p.numel() for p in model.head.parameters())
    print(f"backbone {model.num_parameters - head_parameters:,} parameters + SPRM head {head_parameters:,}")

    config = {"method": "beam", "beam": {"width": 2, "expand": 2},
              "sampling": {"max_step_tokens": args.max_step_tokens, "max_steps": 4}}
    solution = ReflectiveSearch(model, config).solve(args.problem)
    scores = model.score_steps(args.problem, solution.text)
    print(f"answer: {solution.answer}, score {solution.score:.3f}, step scores {[round(s, 3) for s in scores]}")

    if args.out:
        model.save_pretrained(args.out)
        reloaded = ReflectiveModel.from_pretrained(args.out)
        print(f"saved to {args.out}; reloaded scores {[round(s, 3) for s in reloaded.score_steps(args.problem, solution.text)]}")


if __name__ == "__main__":
    main()
