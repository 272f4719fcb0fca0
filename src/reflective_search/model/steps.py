"""Where steps end, at the token level.

A step ends with a delimiter string (default ``.\\n\\n``). Tokenizers often merge a
delimiter with neighbouring text (``5.`` + ``\\n\\n``, or ``.\\n\\n`` as one token), so
matching is done on decoded text and mapped back to tokens: the step's score is read at
the hidden state that emits the first token overlapping the delimiter (MetaStone-S1's
"position whose next token is the delimiter").

Which step ends are *scored* is the model's scoring rule (saved with it, shared by
``score_steps``, head training and the search), after MetaStone-S1's released scorer:

* every delimiter run is scored once, at the state emitting its first token;
* a trailing step with no delimiter is scored (at the state that would emit
  end-of-sequence) only when ``score_final_step`` is on (MetaStone-S1 releases: off);
* with ``think_span`` on and exactly one ``<think>`` and one ``</think>`` in the response,
  only delimiters strictly inside that span count (one right after ``<think>`` does not)
  and the trailing step never does; otherwise the whole response is scored.

Block steps (``sampling.step: {kind: tokens, size: K}``, for models that write no
delimiter) are ``BlockSteps``: every step is K tokens, the last ends at end-of-sequence,
and ``BlockSteps.score_token`` is the one rule for where a block is scored, read by the
search and by ``response_step_tokens`` (score_steps, head training) alike. The think
span does not apply to blocks.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from reflective_search.errors import ModelError

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


class StepBoundary:
    """Finds delimiters in token sequences for one tokenizer."""

    def __init__(self, tokenizer, delimiters: Sequence[str], *, score_final_step: bool = True,
                 think_span: bool = False) -> None:
        if not delimiters or any(not d for d in delimiters):
            raise ModelError("delimiters must be a non-empty list of non-empty strings, e.g. ['.\\n\\n']")
        self.tokenizer = tokenizer
        self.delimiters = tuple(delimiters)
        self.score_final_step = score_final_step  # score a trailing step that has no delimiter
        self.think_span = think_span  # score only inside a response's one <think>...</think> span
        self.may_end = self._tokens_that_may_end(tokenizer, self.delimiters)  # [V] bool

    @staticmethod
    def _tokens_that_may_end(tokenizer, delimiters: tuple[str, ...]) -> np.ndarray:
        """Tokens that may complete a step: those containing a delimiter's last character, or
        (byte-level vocabularies) a lone piece of a multi-byte character, which decodes to U+FFFD."""
        last_chars = {d[-1] for d in delimiters} | ({"\ufffd"} if any(ord(d[-1]) > 127 for d in delimiters) else set())
        size = len(tokenizer)
        may_end = np.zeros(size, np.bool_)
        for token_id in range(size):
            piece = tokenizer.decode([token_id])
            may_end[token_id] = any(ch in piece for ch in last_chars)
        found = [d for d in delimiters if d in tokenizer.decode(tokenizer.encode(d, add_special_tokens=False))]
        if not found:
            raise ModelError(
                f"the tokenizer cannot write any delimiter {list(delimiters)!r} (it does not survive encode/decode): "
                "choose delimiters the tokenizer can represent"
            )
        return may_end

    def find(self, text: str, start: int = 0) -> tuple[int, int] | None:
        """(start, end) of the earliest delimiter in ``text[start:]``, or None."""
        hits = [(text.find(d, start), d) for d in self.delimiters]
        hits = [(i, d) for i, d in hits if i >= 0]
        if not hits:
            return None
        i, d = min(hits, key=lambda hit: (hit[0], -len(hit[1])))
        return i, i + len(d)

    def occurrences(self, text: str) -> list[tuple[int, int]]:
        """(start, end) of every delimiter in ``text``, left to right, not overlapping."""
        found, pos = [], 0
        while (hit := self.find(text, pos)) is not None:
            found.append(hit)
            pos = hit[1]
        return found

    def delimiter_starts(self, text: str) -> list[int]:
        """Char offsets where steps end; a run of adjacent delimiters counts once."""
        starts, last_end = [], -1
        for begin, end in self.occurrences(text):
            if begin != last_end:
                starts.append(begin)
            last_end = end
        return starts

    def char_ends(self, ids: Sequence[int]) -> list[int]:
        """Length of the decoded text after each token (decoding prefixes keeps merges right)."""
        return [len(self.tokenizer.decode(list(ids[: i + 1]))) for i in range(len(ids))]

    @staticmethod
    def token_at(char_ends: Sequence[int], char: int) -> int:
        """Index of the first token whose text reaches past ``char``."""
        for index, end in enumerate(char_ends):
            if end > char:
                return index
        return len(char_ends) - 1

    def span(self, text: str, complete: bool) -> tuple[int, float] | None:
        """(first char inside, first char after) of the think span, or None: score everywhere.

        ``complete=False`` reads a response still being written: a ``<think>`` whose
        ``</think>`` has not come yet opens a span that runs to the end so far.
        """
        if not self.think_span or text.count(THINK_OPEN) != 1 or text.count(THINK_CLOSE) > 1:
            return None
        inside = text.index(THINK_OPEN) + len(THINK_OPEN)
        close = text.find(THINK_CLOSE)
        if close == -1:
            return None if complete else (inside, float("inf"))
        return (inside, close) if close >= inside else None

    def scored_chars(self, text: str, complete: bool = True) -> list[int]:
        """Char offsets of the scored step ends of a response; ``len(text)`` marks a scored
        trailing step (complete responses only)."""
        span = self.span(text, complete)
        ends = [c for c in self.delimiter_starts(text) if span is None or span[0] < c < span[1]]
        tail_start = max((end for _, end in self.occurrences(text)), default=0)
        if complete and self.score_final_step and span is None and text[tail_start:].strip():
            ends.append(len(text))
        return ends

    def response_step_tokens(self, ids: Sequence[int]) -> list[int]:
        """For a whole response, the index of the token that ends each scored step.

        Step n's score is read at the state that emits token ``index`` (a delimiter's
        first token); a scored trailing step is read at the state after its last token
        (the one that would emit end-of-sequence), given as ``len(ids)``.
        """
        text = self.tokenizer.decode(list(ids))
        ends = self.char_ends(ids)
        return [len(ids) if c == len(text) else self.token_at(ends, c) for c in self.scored_chars(text)]

    def step_is_scored(self, before: str, step: str, delimiter_char: int | None, final: bool) -> bool:
        """Whether a step sampled after response text ``before`` counts toward its path's score.

        ``delimiter_char``: where its delimiter starts in ``step`` (None: it has none);
        ``final``: the step ends the response (end-of-sequence). The rule is
        ``scored_chars`` read on the response so far, so a finished path's counted scores
        are exactly what ``score_steps`` gives for its text.
        """
        text = before + step
        if delimiter_char is not None:
            return len(before) + delimiter_char in self.scored_chars(text, complete=False)
        return final and len(text) in self.scored_chars(text, complete=True)


class BlockSteps:
    """Steps of exactly ``size`` tokens; the last one ends at end-of-sequence (EOS included)."""

    def __init__(self, size: int, *, score_final_step: bool = True) -> None:
        if size < 1:
            raise ModelError(f"a block step needs size >= 1 tokens, got {size}")
        self.size = size  # tokens per step
        self.score_final_step = score_final_step  # score the last block (the one that emits EOS)

    def score_token(self, step_length: int, final: bool) -> int | None:
        """Index in a step of the token whose emitting state scores it (None: unscored).

        A block is scored at the state that emits its last token: the K-th token, or, for
        the final block, end-of-sequence (scored only when ``score_final_step`` is on).
        """
        if final and not self.score_final_step:
            return None
        return step_length - 1

    def response_step_tokens(self, ids: Sequence[int]) -> list[int]:
        """For a whole response (EOS not included), the index of the token ending each scored
        block, as the search cut it: ``len(ids)`` stands for the end-of-sequence state."""
        ends, start, total = [], 0, len(ids) + 1  # the search's last block holds the EOS
        while start < total:
            step = min(self.size, total - start)
            at = self.score_token(step, final=start + step == total)
            if at is not None:
                ends.append(start + at)
            start += step
        return ends
