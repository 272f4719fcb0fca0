"""Fine-tune any causal LM as a policy on worked solutions: LoRA (peft) or full, resumable.

The loss covers the response and its end-of-sequence token only, after the prompt exactly
as the search formats it (``model.encode_prompt``: chat template and the task's message
template). Example ``i`` of the stream depends only on (seed, i), so a run resumed from a
checkpoint sees exactly the batches an uninterrupted run would. A checkpoint (every
``checkpoint_every`` steps, and at the end) holds the trainable weights, the optimizer and
the step, written to a temporary folder and renamed into place: a run killed at any
moment resumes from its last complete checkpoint with the same command.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from reflective_search.model.reflective import ReflectiveModel
from reflective_search.train.data import encode_example
from reflective_search.train.policy import pad_batch
from reflective_search.train.tasks import TrainingProblem

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "trainer_state.json"


@dataclass(frozen=True, slots=True)
class FinetuneConfig:
    steps: int = 200  # optimizer steps
    batch_size: int = 8  # examples per step
    learning_rate: float = 1e-4  # peak AdamW learning rate (LoRA usually wants ~1e-3)
    warmup_steps: int = 8  # linear warm-up, then linear decay to 0
    weight_decay: float = 0.0  # AdamW weight decay
    lora_rank: int = 0  # 0: full fine-tuning; r > 0: LoRA of rank r on every linear map of the decoder
    lora_alpha: float | None = None  # LoRA scale numerator (None: 2 x rank)
    bf16: bool = False  # bf16 autocast on CPU (AVX-512 BF16 machines); weights stay fp32
    checkpoint_every: int = 50  # steps between checkpoints
    max_minutes: float | None = None  # stop (after a checkpoint) once this much wall time is spent
    seed: int = 0  # example order and LoRA init


def schedule(step: int, config: FinetuneConfig) -> float:
    """Linear warm-up to the peak, then linear decay to zero at ``config.steps``."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    remaining = (config.steps - step) / max(config.steps - config.warmup_steps, 1)
    return config.learning_rate * max(remaining, 0.0)


def add_lora(model: ReflectiveModel, config: FinetuneConfig) -> ReflectiveModel:
    """Wrap the backbone with LoRA adapters (peft) on every linear map of its decoder layers."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(config.seed)
    lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha or 2 * config.lora_rank, lora_dropout=0.0,
                      target_modules="all-linear", task_type="CAUSAL_LM")
    return model.with_backbone(get_peft_model(model.backbone, lora))


def continue_lora(model: ReflectiveModel, rank: int | None = None) -> ReflectiveModel:
    """The model's own LoRA adapter, trainable again over its unmerged named base (expert
    iteration, joint head training: the result saves as an adapter of the same size, not
    full weights). ``rank``: the rank asked for, refused if the adapter has another."""
    from peft import PeftConfig, PeftModel

    from reflective_search.errors import ProblemError
    from reflective_search.model.bases import load_base

    saved = PeftConfig.from_pretrained(str(model.adapter_source)).r
    if rank is not None and saved != rank:
        raise ProblemError(f"{model.adapter_source} holds a LoRA adapter of rank {saved}: continue it with "
                           f"--lora {saved}, or fine-tune full weights with --lora 0")
    dtype = next(model.backbone.parameters()).dtype
    base, _ = load_base(model.base_name, dtype, model.backbone.config._attn_implementation or "sdpa")
    adapter = PeftModel.from_pretrained(base.to(model.device), str(model.adapter_source), is_trainable=True)
    return model.with_backbone(adapter)


def make_batch(model: ReflectiveModel, examples: list[TrainingProblem]) -> dict[str, torch.Tensor]:
    """Padded ids, mask and response-only labels (prompt and padding are -100)."""
    encoded = [encode_example(model, e.text, e.solution) for e in examples]
    return pad_batch(encoded, model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0)


def trainable_state(backbone: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters being trained (all of them, or the LoRA adapters)."""
    return {name: p.detach().clone() for name, p in backbone.named_parameters() if p.requires_grad}


def save_checkpoint(out: Path, backbone, optimizer, step: int, tokens: int) -> None:
    """Write the trainable weights, optimizer and step atomically under ``out/checkpoint``."""
    staging = out / f".{CHECKPOINT_DIR}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    torch.save({"weights": trainable_state(backbone), "optimizer": optimizer.state_dict()}, staging / "state.pt")
    (staging / STATE_FILE).write_text(json.dumps({"step": step, "tokens": tokens}), encoding="utf-8")
    final = out / CHECKPOINT_DIR
    old = out / f".{CHECKPOINT_DIR}.old"
    if final.exists():  # keep the previous .old when there is no newer one to replace it
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    staging.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(out: Path, backbone, optimizer) -> tuple[int, int]:
    """Restore the last complete checkpoint; returns (next step, tokens so far), (0, 0) if none.

    A kill between ``save_checkpoint``'s two renames leaves only ``.checkpoint.old``: that
    complete previous checkpoint is used then.
    """
    folder = next((f for f in (out / CHECKPOINT_DIR, out / f".{CHECKPOINT_DIR}.old") if (f / STATE_FILE).is_file()),
                  None)
    if folder is None:
        return 0, 0
    meta = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    blob = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
    params = dict(backbone.named_parameters())
    if set(blob["weights"]) != {name for name, p in params.items() if p.requires_grad}:
        from reflective_search.errors import ConfigError

        raise ConfigError(f"{folder} holds a checkpoint of another kind of run (LoRA rank or model differ): "
                          "rerun with the same options, or pick a fresh --out")
    with torch.no_grad():
        for name, value in blob["weights"].items():
            params[name].copy_(value)
    optimizer.load_state_dict(blob["optimizer"])
    return int(meta["step"]) + 1, int(meta["tokens"])


def held_out_loss(model: ReflectiveModel, examples: list[TrainingProblem], batch_size: int = 8) -> float:
    """Mean response-token loss on ``examples`` (no gradient)."""
    total, count = 0.0, 0
    with torch.no_grad():
        for first in range(0, len(examples), batch_size):
            batch = make_batch(model, examples[first: first + batch_size])
            tokens = int((batch["labels"][:, 1:] != -100).sum())
            total += float(model.backbone(**batch).loss) * tokens
            count += tokens
    return total / max(count, 1)


def finetune(model: ReflectiveModel, example: Callable[[int], TrainingProblem], config: FinetuneConfig,
             out: Path, log=None) -> tuple[ReflectiveModel, dict]:
    """Train ``model``'s backbone on ``example(0), example(1), ...``; returns it and a summary.

    Resumes from ``out/checkpoint`` when one exists. LoRA runs return the model with the
    adapters still attached (``save_pretrained`` then writes only the adapter).
    """
    log = log or sys.stderr  # bound at call time: a default bound at import outlives a redirected stream
    from tqdm import tqdm

    backbone = model.backbone.train()
    params = [p for p in backbone.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    start_step, tokens = load_checkpoint(out, backbone, optimizer)
    if start_step:
        print(f"resuming from {out / CHECKPOINT_DIR} at step {start_step}", file=log)
    began, step, run_tokens = time.perf_counter(), start_step, 0
    bar = tqdm(total=config.steps, initial=start_step, desc="fine-tuning", unit="step", file=log)
    if start_step:
        model.adapter_source = None  # the checkpoint's weights replaced those the model was loaded with
    if start_step >= config.steps:
        bar.close()
        return model.eval(), {"steps_done": start_step, "seconds": 0.0, "tokens": tokens, "tokens_per_s": 0.0}
    for step in range(start_step, config.steps):
        loss, batch_tokens = _train_step(model, optimizer, params, example, step, config)
        tokens, run_tokens = tokens + batch_tokens, run_tokens + batch_tokens
        rate = run_tokens / max(time.perf_counter() - began, 1e-9)  # this process's work only
        bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{rate:.0f}")
        bar.update()
        last = step == config.steps - 1 or _out_of_time(began, config)
        if last or (step + 1) % config.checkpoint_every == 0:
            save_checkpoint(out, backbone, optimizer, step, tokens)
        if last:
            break
    bar.close()
    model.adapter_source = None  # the backbone changed: an adapter it was loaded from no longer describes it
    seconds = time.perf_counter() - began
    return model.eval(), {"steps_done": step + 1, "seconds": round(seconds, 1), "tokens": tokens,
                          "tokens_per_s": round(run_tokens / max(seconds, 1e-9), 1)}


def _train_step(model, optimizer, params, example, step: int, config: FinetuneConfig) -> tuple[float, int]:
    for group in optimizer.param_groups:
        group["lr"] = schedule(step, config)
    batch = make_batch(model, [example(step * config.batch_size + i) for i in range(config.batch_size)])
    return optimizer_step(model, optimizer, params, batch, config.bf16), int(batch["attention_mask"].sum())


def optimizer_step(model, optimizer, params, batch: dict[str, torch.Tensor], bf16: bool) -> float:
    """One forward, backward (gradient clipped at 1) and update on ``batch``; returns the loss."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model.backbone(**batch).loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    return loss.item()


def _out_of_time(began: float, config: FinetuneConfig) -> bool:
    return config.max_minutes is not None and time.perf_counter() - began > 60 * config.max_minutes


# -- the whole recipe behind ``train policy --base`` -----------------------------------------


def load_start(base: str) -> ReflectiveModel:
    """A base by name, a saved reflective model, or a plain Hugging Face causal LM folder."""
    from reflective_search.model.bases import BASES
    from reflective_search.model.checkpoint import CONFIG_FILE

    folder = Path(base)
    if base in BASES or (folder / CONFIG_FILE).is_file() or not (folder / "config.json").is_file():
        return ReflectiveModel.from_pretrained(base)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    backbone = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="sdpa")
    return ReflectiveModel.from_backbone(backbone.eval(), AutoTokenizer.from_pretrained(folder))


def for_task(model: ReflectiveModel, task) -> ReflectiveModel:
    """The model prompted as the task's models are (inside its chat template, if it has one)
    and carrying the task's search defaults."""
    settings = dataclasses.replace(model.settings, message_template=task.message_template,
                                   prompt_template=task.message_template + "\n\n",
                                   search_defaults=task.search_defaults)
    return model.with_head(model.head, settings, model.feature_norm)


def example_stream(problems: str, numbers, seed: int, held_out: int) -> tuple[Callable[[int], TrainingProblem], list]:
    """(example(i), held-out examples): the generator draws example i from seed (seed, i); a
    file is split once (the first ``held_out`` of a seeded shuffle) and its rest cycled in a
    fresh seeded order every epoch."""
    import random

    from reflective_search.interface import derive_seed
    from reflective_search.train.tasks import countdown_problems, read_problem_file

    if problems == "countdown":
        from reflective_search.tasks.countdown import solution_text, solve_random
        from reflective_search.train.data import valid_problems

        rng = random.Random(seed)
        valid = [TrainingProblem(p.text, str(p.target), solution_text(p, solve_random(p.numbers, p.target, rng)))
                 for p in valid_problems(numbers[0], held_out)]
        return (lambda i: countdown_problems(1, numbers, derive_seed(seed, i), with_solutions=True)[0]), valid
    records = read_problem_file(problems, need="solution")
    random.Random(seed).shuffle(records)
    kept, train = records[:held_out], records[held_out:] or records

    @functools.lru_cache(maxsize=2)  # an epoch's order is drawn once, not once per example
    def order(epoch: int) -> list[TrainingProblem]:
        return random.Random(derive_seed(seed, epoch)).sample(train, len(train))

    def example(i: int) -> TrainingProblem:
        epoch, position = divmod(i, len(train))
        return order(epoch)[position]

    return example, kept


def finetune_policy(base: str, problems: str, task_name: str, config: FinetuneConfig, out: Path,
                    numbers=(3,), held_out: int = 64, adapter_dtype: torch.dtype | None = None) -> dict:
    """Load, adapt to the task, fine-tune (resuming if ``out`` has a checkpoint), save; a summary.
    A LoRA adapter is stored in ``adapter_dtype`` when given (a finished run re-run saves again)."""
    from reflective_search.train.tasks import get_task

    example, valid = example_stream(problems, list(numbers), config.seed, held_out)  # bad files fail first
    start = load_start(base)
    model = for_task(start, get_task(task_name))
    for probe in (example(0), *valid[:1]):
        encode_example(model, probe.text, probe.solution)  # a bad record fails now, not at step 1,000
    limits = None if problems == "countdown" else file_step_limits(model, problems)
    if limits is not None:
        model = with_defaults(model, limits.search_defaults(dict(model.settings.search_defaults)))
    # A LoRA run saves an adapter over the named base when it trains one over exactly that base.
    over_base = bool(config.lora_rank) and (base == model.base_name or model.adapter_source is not None)
    if config.lora_rank:
        model = continue_lora(model, config.lora_rank) if model.adapter_source is not None else add_lora(model, config)
    model, summary = finetune(model, example, config, out)
    # The head read the old backbone's states: it must be trained again on the new one.
    model = model.with_head(model.head, dataclasses.replace(model.settings, head_trained=False), model.feature_norm)
    summary["held_out_loss"] = held_out_loss(model, valid) if valid else float("nan")
    summary["kind"] = f"LoRA r={config.lora_rank}" if config.lora_rank else "full"
    summary["config"] = dataclasses.asdict(config)
    summary["base"] = start.base_name  # the named base it descends from (None: none)
    summary["held_out_examples"] = len(valid)
    if limits is not None:
        summary["step_limits"] = {"longest_step_tokens": limits.longest_step, "most_steps": limits.most_steps}
    summary["search_defaults"] = dict(model.settings.search_defaults)
    save_policy(model, out, over_base, adapter_dtype)
    return summary


def file_step_limits(model: ReflectiveModel, problems: str):
    """The step limits of a problems file's solutions (``train.step_limits``), said on stderr."""
    from reflective_search.train.step_limits import step_limits
    from reflective_search.train.tasks import read_problem_file

    limits = step_limits(model, [p.solution for p in read_problem_file(problems, need="solution")])
    chosen = ", ".join(f"{key}={value}" for key, value in limits.search_defaults(dict(model.settings.search_defaults)))
    print(f"search defaults drawn from the solutions: {chosen} (longest step {limits.longest_step} tokens, "
          f"most steps {limits.most_steps})", file=sys.stderr)
    return limits


def with_defaults(model: ReflectiveModel, chosen) -> ReflectiveModel:
    """``model`` carrying the settings ``chosen`` over the search defaults it had."""
    merged = tuple({**dict(model.settings.search_defaults), **dict(chosen)}.items())
    return model.with_head(model.head, dataclasses.replace(model.settings, search_defaults=merged), model.feature_norm)


def save_policy(model: ReflectiveModel, out: Path, adapter_over_base: bool,
                adapter_dtype: torch.dtype | None = None) -> None:
    """An adapter over the named base (a few MB) when possible, else the merged full weights."""
    if hasattr(model.backbone, "peft_config") and not adapter_over_base:
        model = model.with_backbone(model.backbone.merge_and_unload())
        model.base_name = None
    model.save_pretrained(out, adapter_dtype)
