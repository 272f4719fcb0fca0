"""Saving and loading reflective models.

Our layout: the backbone and tokenizer as Hugging Face saves them, the head in
``sprm_head.safetensors`` and its settings in ``reflective_config.json``. A MetaStone-S1
release (HF files plus ``score_module.pt``) loads too; that file is a pickle, so it is
read with ``weights_only=True`` (no code runs). Every failure names the file and what to do.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from reflective_search.errors import ModelError
from reflective_search.model.head import build_head, head_shape
from reflective_search.model.reflective import ModelSettings, ReflectiveModel

CONFIG_FILE = "reflective_config.json"
ADAPTER_FILE = "adapter_config.json"  # a LoRA adapter (peft) over the named base replaces the backbone files
ADAPTER_WEIGHTS = "adapter_model.safetensors"
HEAD_FILE = "sprm_head.safetensors"
METASTONE_HEAD_FILE = "score_module.pt"
FORMAT_VERSION = 1
HEAD_KEYS = ("0.weight", "0.bias", "3.weight", "3.bias")
NORM_KEYS = ("feature_mean", "feature_std")  # optional: the standardisation a head was trained behind


def save_model(model: ReflectiveModel, directory, adapter_dtype: torch.dtype | None = None) -> None:
    """Save ``model``; a LoRA adapter is stored in ``adapter_dtype`` when given (bf16 halves it)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    is_adapter = hasattr(model.backbone, "peft_config")
    if is_adapter and model.base_name is None:
        raise ModelError("a LoRA adapter can only be saved over a named base model (model.base_name is unset)")
    _remove_stale_weights(directory, adapter=is_adapter or model.adapter_source is not None)
    if model.adapter_source is not None:
        _copy_adapter(Path(model.adapter_source), directory)
    else:
        model.backbone.save_pretrained(directory)  # a peft model writes only its adapter
        if is_adapter and adapter_dtype is not None:
            _cast_adapter(directory / ADAPTER_WEIGHTS, adapter_dtype)
    model.tokenizer.save_pretrained(directory)
    head_state = {k: v.detach().contiguous().cpu() for k, v in model.head.state_dict().items()}
    if model.feature_norm is not None:
        head_state |= {key: t.detach().float().contiguous().cpu() for key, t in zip(NORM_KEYS, model.feature_norm)}
    save_file(head_state, str(directory / HEAD_FILE))
    settings = asdict(model.settings)
    settings["head_width"] = head_shape(head_state)[1]
    settings["search_defaults"] = dict(model.settings.search_defaults)
    blob = {"format_version": FORMAT_VERSION, "hidden_size": model.hidden_size, "base": model.base_name, **settings}
    _write_atomic(directory / CONFIG_FILE, json.dumps(blob, indent=2) + "\n")
    if (directory / ADAPTER_FILE).is_file():
        _name_base(directory / ADAPTER_FILE, model.base_name)
    from reflective_search.model.card import plain_card, write_card

    write_card(directory, plain_card(directory.resolve().name, model.base_name, (directory / ADAPTER_FILE).is_file(),
                                     model.settings))  # in place of peft's empty template


def _name_base(path: Path, base: str) -> None:
    """Name the adapter's base by the library's name for it (which the loader resolves), not
    by the local folder peft recorded (a path in the user's cache)."""
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("base_model_name_or_path") != base:
        _write_atomic(path, json.dumps({**config, "base_model_name_or_path": base}, indent=2, sort_keys=True) + "\n")


def _remove_stale_weights(directory: Path, adapter: bool) -> None:
    """Saving into a folder that held the other kind of backbone: drop the old kind's files,
    which loading would otherwise prefer (an adapter) or never read (full weights)."""
    if adapter:
        stale = list(directory.glob("model*.safetensors")) + list(directory.glob("model.safetensors.index.json"))
    else:
        stale = [directory / ADAPTER_FILE, directory / ADAPTER_WEIGHTS]
    for path in stale:
        path.unlink(missing_ok=True)


def _cast_adapter(path: Path, dtype: torch.dtype) -> None:
    """Rewrite the adapter's weights in ``dtype`` (atomically); loading merges them into the base's dtype."""
    from safetensors.torch import load_file, save_file

    partial = path.with_name(path.name + ".partial")
    save_file({key: t.to(dtype).contiguous() for key, t in load_file(str(path)).items()}, str(partial))
    partial.replace(path)


def _copy_adapter(source: Path, directory: Path) -> None:
    """The unchanged backbone is the base plus this adapter: copy the adapter's files."""
    import shutil

    if source.resolve() == directory.resolve():
        return
    for name in (ADAPTER_FILE, ADAPTER_WEIGHTS):
        shutil.copyfile(source / name, directory / name)


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a sibling file, then rename it over ``path`` (never half a file)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


def load_model(directory, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
               attn_implementation: str | None = None) -> ReflectiveModel:
    """Load from one of our directories, a MetaStone-S1 release, a shipped model's or a base model's name."""
    from reflective_search.model.bases import BASES

    if str(directory) in BASES and not Path(directory).exists():
        return _from_base(str(directory), dtype, device, attn_implementation)
    source, directory = str(directory), _resolve(directory)
    base = None
    if (directory / CONFIG_FILE).is_file():
        settings, base = _read_settings(directory / CONFIG_FILE)
        head_state = _read_safetensors(directory / HEAD_FILE)
    elif (directory / METASTONE_HEAD_FILE).is_file():
        # MetaStone-S1: '.\n\n' steps, hidden_states[-2], chat template, scored as its own scorer scores.
        settings = ModelSettings(score_final_step=False, think_span=True)
        head_state = _read_metastone_head(directory / METASTONE_HEAD_FILE)
    else:
        raise ModelError(
            f"{directory} holds neither {CONFIG_FILE} nor {METASTONE_HEAD_FILE}: save it with "
            "ReflectiveModel.save_pretrained, or point at a MetaStone-S1 release"
        )
    if (directory / ADAPTER_FILE).is_file():
        backbone, tokenizer = _load_adapter(directory, base, dtype, device, attn_implementation)
    else:
        backbone, tokenizer = _load_backbone(directory, dtype, device, attn_implementation)
    norm = tuple(head_state.pop(key) for key in NORM_KEYS) if all(k in head_state for k in NORM_KEYS) else None
    hidden, width = head_shape(head_state)
    head = build_head(hidden, width)
    head.load_state_dict({key: head_state[key] for key in HEAD_KEYS})
    head.to(device=device, dtype=dtype)
    model = ReflectiveModel(backbone, tokenizer, head, settings, norm)
    model.source, model.base_name = source, base
    model.adapter_source = directory if (directory / ADAPTER_FILE).is_file() else None
    return model


def _from_base(name: str, dtype, device, attn_implementation) -> ReflectiveModel:
    """A named base model with a fresh (untrained) head: the start of ``train policy``."""
    from reflective_search.model.bases import load_base

    backbone, tokenizer = load_base(name, dtype, pick_attention(attn_implementation, device))
    model = ReflectiveModel.from_backbone(backbone.to(device), tokenizer)
    model.source, model.base_name = name, name
    return model


def _load_adapter(directory: Path, base: str | None, dtype, device, attn_implementation):
    """The named base with the saved LoRA adapter merged in (plain weights, full speed)."""
    from reflective_search.model.bases import BASES, load_base

    if base not in BASES:
        raise ModelError(f"{directory} holds a LoRA adapter but names no known base ({base!r}); "
                         f"known bases: {', '.join(sorted(BASES))}")
    backbone, _ = load_base(base, dtype, pick_attention(attn_implementation, device))
    try:
        merged = _merged(backbone, directory)
    except Exception as exc:  # peft raises many kinds for broken adapter files
        raise ModelError(f"{directory}: the LoRA adapter is corrupted or incomplete ({exc}): re-save the model") from None
    return merged.to(device).eval(), _load_tokenizer(directory)


def _merged(backbone, directory: Path):
    """``backbone`` with the adapter in ``directory`` merged: by hand when it is plain LoRA
    (no peft: half the time, see ``model.lora``), else through peft."""
    from safetensors.torch import load_file

    from reflective_search.model.lora import merge_lora, plain_lora

    config = json.loads((directory / ADAPTER_FILE).read_text(encoding="utf-8"))
    weights = directory / ADAPTER_WEIGHTS
    if plain_lora(config) and weights.is_file() and merge_lora(backbone, load_file(str(weights)), config):
        return backbone
    from peft import PeftModel

    return PeftModel.from_pretrained(backbone, directory).merge_and_unload()


def _resolve(directory) -> Path:
    """A path as given, or the name of a model shipped inside the package."""
    path = Path(directory)
    if path.is_dir():
        return path
    from reflective_search.shipped import shipped_model_path

    shipped = shipped_model_path(str(directory))
    if shipped is not None:
        return shipped
    from reflective_search.model.bases import base_names
    from reflective_search.shipped import shipped_model_names

    names = ", ".join(shipped_model_names() + base_names())
    raise ModelError(f"model directory {directory} does not exist: pass a saved model's folder or a model's name ({names})")


def _read_settings(path: Path) -> tuple[ModelSettings, str | None]:
    """The saved settings and the named base the model was trained from (None: none)."""
    try:
        blob = json.loads(path.read_text(encoding="utf-8"))
        return ModelSettings(
            delimiters=tuple(blob["delimiters"]),
            feature_layers=_feature_layers(blob),
            head_width=blob.get("head_width"),
            prompt_template=blob["prompt_template"],
            use_chat_template=bool(blob["use_chat_template"]),
            # Saved before the rule was a setting: those heads were trained with the final step scored.
            score_final_step=bool(blob.get("score_final_step", True)),
            think_span=bool(blob.get("think_span", False)),
            message_template=blob.get("message_template", "{problem}"),
            search_defaults=tuple(blob.get("search_defaults", {}).items()),
            head_trained=bool(blob.get("head_trained", True)),
        ), blob.get("base")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{path} is unreadable or incomplete ({exc}): re-save the model") from None


def _feature_layers(blob: dict) -> tuple[int, ...]:
    """The saved feature layers (configs before several layers were possible hold one int)."""
    if "feature_layers" in blob:
        return tuple(int(layer) for layer in blob["feature_layers"])
    return (int(blob["feature_layer"]),)


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not path.is_file():
        raise ModelError(f"{path} is missing: the SPRM head was not saved with this model; re-save it")
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise ModelError(f"{path} is corrupted or truncated ({exc}): re-save or reinstall the model") from None
    return _check_head_keys(state, path)


def _read_metastone_head(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign pickle fails in many ways
        raise ModelError(f"{path} cannot be read safely ({exc}): it must be a plain tensor state dict") from None
    if not isinstance(state, dict):
        raise ModelError(f"{path} holds a {type(state).__name__}, not a state dict of the score head")
    return _check_head_keys(state, path)


def _check_head_keys(state: dict, path: Path) -> dict[str, torch.Tensor]:
    missing = [k for k in HEAD_KEYS if k not in state]
    if missing:
        raise ModelError(f"{path} lacks head weights {missing}: expected keys {list(HEAD_KEYS)}")
    return {k: state[k] for k in (*HEAD_KEYS, *NORM_KEYS) if k in state}


def pick_attention(requested: str | None, device) -> str:
    """The attention kernel, chosen at run time: ``auto`` takes flash-attention-2 only on
    CUDA with the optional ``flash_attn`` package (never imported at module level), else
    SDPA. Note the shared-KV expander needs SDPA or eager (its tree masks are 4D)."""
    if requested not in (None, "auto"):
        return requested
    if requested == "auto" and torch.device(device).type == "cuda":
        import importlib.util

        if importlib.util.find_spec("flash_attn") is not None:
            return "flash_attention_2"
    return "sdpa"


def _load_tokenizer(directory: Path):
    """The saved tokenizer as saved: AutoTokenizer would swap a plain tokenizers-library
    tokenizer for the model type's own class (e.g. Qwen2Tokenizer), which pre-tokenizes
    differently and so changes every token id."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    config_path = directory / "tokenizer_config.json"
    saved_class = json.loads(config_path.read_text(encoding="utf-8")).get("tokenizer_class") if config_path.is_file() else None
    if saved_class in ("TokenizersBackend", "PreTrainedTokenizerFast") and (directory / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(directory)
    return AutoTokenizer.from_pretrained(directory)


def _load_backbone(directory: Path, dtype, device, attn_implementation):
    from transformers import AutoModelForCausalLM

    if not (directory / "config.json").is_file():
        raise ModelError(f"{directory} has no config.json: the backbone files are missing")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per load clutters stderr; errors stay one line
    try:
        backbone = AutoModelForCausalLM.from_pretrained(
            directory, dtype=dtype, attn_implementation=pick_attention(attn_implementation, device)
        )
        tokenizer = _load_tokenizer(directory)
    except Exception as exc:  # transformers and safetensors raise many kinds for broken files
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"{directory}: the backbone or tokenizer files are corrupted or incomplete ({first_line}): "
            "re-save the model (or reinstall the package for a shipped one)"
        ) from None
    return backbone.to(device).eval(), tokenizer
