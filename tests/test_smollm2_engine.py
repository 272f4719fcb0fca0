"""The engine on a real model: SmolLM2-135M-Instruct, shared == reference token for token
at temperature 0 for greedy and beam (a BPE tokenizer, a chat template, GQA with 3 KV heads)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from reflective_search import ReflectiveSearch
from reflective_search.bench.smol import SMOL_INSTALL, load_smollm2, smol_available

PROBLEM = "Numbers: 3 7 8. Target: 29."
SHORT = {"sampling": {"max_step_tokens": 12, "max_steps": 2, "temperature": 0.0}, "beam": {"width": 2, "expand": 2}}


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    if not smol_available():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs SmolLM2: {SMOL_INSTALL}")
        pytest.skip(f"SmolLM2 is not installed: {SMOL_INSTALL}")
    from reflective_search.model.reflective import ReflectiveModel

    # pytest's tmp root outlives each session's folder, so the safetensors copy is made once per machine
    backbone, tokenizer = load_smollm2(tmp_path_factory.getbasetemp().parent / "smollm2-135m-instruct")
    return ReflectiveModel.from_backbone(backbone, tokenizer)


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_shared_equals_reference_on_smollm2_at_temperature_zero(smollm2, method):
    shared = ReflectiveSearch(smollm2, {"method": method, "expander": "shared", **SHORT}).solve(PROBLEM)
    reference = ReflectiveSearch(smollm2, {"method": method, "expander": "reference", **SHORT}).solve(PROBLEM)
    tree = shared.tree
    assert [tree.token_path(n) for n in range(tree.size)] == [reference.tree.token_path(n) for n in range(reference.tree.size)]
    assert shared.text == reference.text and shared.stats.generated_tokens > 12
    np.testing.assert_allclose(tree.score[: tree.size], reference.tree.score[: reference.tree.size], atol=1e-4)
    assert shared.stats.forwarded_tokens < reference.stats.forwarded_tokens
