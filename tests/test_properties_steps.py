"""Properties of the step rules (``StepBoundary``, ``BlockSteps``) on generated token sequences.

The reference below is the scoring rule as model/steps.py documents it, written over the
tokens' own texts (their concatenation is the response: true of a character tokenizer and
of a byte-level BPE on ASCII text) instead of over decoded prefixes.
"""

from __future__ import annotations

import functools

from hypothesis import example, given
from hypothesis import strategies as st

from reflective_search.model.steps import BlockSteps, StepBoundary
from reflective_search.model.tiny import TINY_CORPUS
from reflective_search.model.tokenizer import build_char_tokenizer, train_bpe_tokenizer

OPEN, CLOSE = "<think>", "</think>"
# Pieces a response is written from: delimiters alone, merged with text, in runs, and the think tags.
WORDS = ["7", "a", " ", ".", "\n", "\n\n", ".\n\n", "7.\n\n", ";", ";;", ";x", OPEN, CLOSE, OPEN + ".\n\n", "x"]
# Sets where one delimiter starts another (the longest is taken) or ends where another starts.
DELIMITER_SETS = [(".\n\n",), ("\n\n",), (".\n\n", "\n\n"), (";", ";;"), (";", ";x"), ("\n", ".\n\n")]


@functools.cache
def tokenizer(kind: str):
    if kind == "char":
        return build_char_tokenizer("7a .\n;x<>/thinkx")
    return train_bpe_tokenizer(TINY_CORPUS + [";;x;a\n"] * 5, vocab_size=384)  # merges ".\n\n", "7.\n\n", ...


def reference_step_tokens(pieces: list[str], delimiters: tuple[str, ...], score_final_step: bool,
                          think_span: bool) -> list[int]:
    """Token indices of the scored step ends, as model/steps.py documents the rule."""
    text = "".join(pieces)
    runs, tail_start, at, run_end = [], 0, 0, -1  # runs: where each run of adjacent delimiters starts
    while at < len(text):
        here = [d for d in delimiters if text.startswith(d, at)]
        if not here:
            at += 1
            continue
        if at != run_end:
            runs.append(at)
        at = run_end = tail_start = at + max(map(len, here))  # the longest delimiter starting here
    span = None
    if think_span and text.count(OPEN) == 1 and text.count(CLOSE) == 1:
        inside, close = text.index(OPEN) + len(OPEN), text.index(CLOSE)
        span = (inside, close) if close >= inside else None
    scored = [c for c in runs if span is None or span[0] < c < span[1]]
    ends, total = [], 0
    for piece in pieces:
        total += len(piece)
        ends.append(total)
    tokens = [next(i for i, end in enumerate(ends) if end > c) for c in scored]  # the first token reaching past c
    if score_final_step and span is None and text[tail_start:].strip():
        tokens.append(len(pieces))  # the state that would emit end-of-sequence
    return tokens


@example("char", [OPEN, ".\n\n", "7", ".\n\n", CLOSE, "7"], (".\n\n",), True, True)  # a delimiter right after <think>
@example("bpe", ["a", ";x"], (";", ";x"), True, False)  # the longest delimiter leaves no trailing step
@given(st.sampled_from(["char", "bpe"]), st.lists(st.sampled_from(WORDS), max_size=24), st.sampled_from(DELIMITER_SETS),
       st.booleans(), st.booleans())
def test_scored_step_tokens_increase_lie_in_the_response_and_equal_the_reference(kind, words, delimiters,
                                                                                score_final_step, think_span):
    tok = tokenizer(kind)
    ids = [i for word in words for i in tok.encode(word, add_special_tokens=False)]
    rule = StepBoundary(tok, delimiters, score_final_step=score_final_step, think_span=think_span)
    scored = rule.response_step_tokens(ids)
    assert scored == sorted(set(scored)) and all(0 <= i <= len(ids) for i in scored)
    assert all(i < len(ids) for i in scored[:-1])  # only the last may be the end-of-sequence state
    pieces = [tok.decode([i]) for i in ids]
    assert scored == reference_step_tokens(pieces, delimiters, score_final_step, think_span)


def reference_block_tokens(length: int, size: int, score_final_step: bool) -> list[int]:
    """Every size-th token ends a block; the last block ends at end-of-sequence (index ``length``)."""
    whole = [end for end in range(size - 1, length, size)]  # blocks that end before end-of-sequence
    return whole + ([length] if score_final_step else [])


@given(st.integers(0, 200), st.integers(1, 40), st.booleans())
def test_block_step_tokens_are_every_kth_and_the_end_and_equal_the_reference(length, size, score_final_step):
    scored = BlockSteps(size, score_final_step=score_final_step).response_step_tokens(list(range(length)))
    assert scored == sorted(set(scored)) and all(0 <= i <= length for i in scored)
    assert scored == reference_block_tokens(length, size, score_final_step)
