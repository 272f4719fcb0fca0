"""Fine-tuning throughput on a base model: LoRA against full, bf16 autocast against fp32.

Every variant starts from a fresh copy of the base and trains on the very same batches
(Countdown solutions drawn from one seed), in one process with one thread, so the ratios
hold on a shared machine. Tokens per second count every token of the batch (prompt,
response and padding), as ``train policy`` reports them; times are CPU seconds after one
warm-up step.
"""

from __future__ import annotations

import time

VARIANTS = {"lora_fp32": (16, False), "lora_bf16": (16, True), "full_fp32": (0, False), "full_bf16": (0, True)}


def run_finetune_bench(base: str = "smollm2-135m-instruct", steps: int = 3, batch_size: int = 8) -> dict:
    """Tokens/s per variant and the ratios to LoRA fp32."""
    import torch

    from reflective_search.train.finetune import FinetuneConfig, example_stream

    torch.set_num_threads(1)
    example, _ = example_stream("countdown", [3], seed=0, held_out=0)
    batches = [[example(step * batch_size + i) for i in range(batch_size)] for step in range(steps + 1)]
    from reflective_search.experiments.progress import progress_bar

    rates = {}
    with progress_bar(len(VARIANTS), "fine-tuning variants", "variant") as bar:
        for name, (rank, bf16) in VARIANTS.items():
            rates[name] = _variant_rate(base, batches, FinetuneConfig(lora_rank=rank, bf16=bf16, learning_rate=1e-4))
            bar.update()
    return {"tokens_per_s": rates, "ratio_to_lora_fp32": {k: round(v / rates["lora_fp32"], 2) for k, v in rates.items()},
            "steps": steps, "batch_size": batch_size}


def _variant_rate(base: str, batches, config) -> float:
    import torch

    from reflective_search.model.reflective import ReflectiveModel
    from reflective_search.train.finetune import add_lora, for_task, make_batch, optimizer_step
    from reflective_search.train.tasks import get_task

    model = for_task(ReflectiveModel.from_pretrained(base), get_task("countdown"))
    model = add_lora(model, config) if config.lora_rank else model
    params = [p for p in model.backbone.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate)
    model.backbone.train()
    tokens, seconds = 0, 0.0
    for index, examples in enumerate(batches):
        batch = make_batch(model, examples)
        start = time.process_time()
        optimizer_step(model, optimizer, params, batch, config.bf16)
        if index > 0:  # the first step warms up
            seconds += time.process_time() - start
            tokens += int(batch["attention_mask"].sum())
    return round(tokens / seconds, 1)
