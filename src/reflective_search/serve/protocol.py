"""The OpenAI chat-completions wire format: parsing a request, writing a response or an error.

Pure functions over plain dicts (no FastAPI, no torch), so every refusal is testable alone.
Only the fields a search can honour are read; the others OpenAI defines are ignored, as
vLLM's server ignores what its engine cannot use. ``n`` is refused above 1: a search returns
one answer (ask for more samples with ``reasoning_effort`` or ``search.best_of_n.n``).
``max_completion_tokens`` (or ``max_tokens``) becomes ``budget.tokens``, the generated tokens
a search may spend; MCTS reads it, while Best-of-N, beam, DVTS and REBASE spend what their
width and ``sampling`` say.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from reflective_search.config import EFFORT_N
from reflective_search.interface import StepEnd
from reflective_search.solution import Solution
from reflective_search.tree import NO_NODE

# OpenAI sampling fields that mean the same for a search, as dotted search keys
SAMPLING_FIELDS = {"temperature": "sampling.temperature", "top_p": "sampling.top_p", "seed": "seed"}
TOKEN_FIELDS = ("max_completion_tokens", "max_tokens")  # the search's token budget (budget.tokens)
SERVER_KEYS = ("expander", "expander_options")  # search keys only the server's --config may set


class APIError(Exception):
    """A refusal sent as OpenAI's error body ``{"error": {message, type, param, code}}``."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None,
                 kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.kind = status, message, code, param, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str  # the model the client named
    problem: str  # the last user message's text
    effort: str | None  # reasoning_effort: low | medium | high (None: the server's search)
    fields: Mapping[str, Any]  # dotted search keys set by OpenAI fields (temperature, seed, ...)
    search: Mapping[str, Any]  # the body's ``search`` object (the client's extra_body), unchecked
    stream: bool = False  # send the answer as server-sent events (once the search has ended)
    include_usage: bool = False  # stream_options.include_usage: a last chunk with usage


def parse_json(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 400."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise APIError(400, f"the body is not valid JSON ({error}); send a JSON object", "invalid_json") from None
    if not isinstance(data, dict):
        raise APIError(400, f"the body must be a JSON object, got {type(data).__name__}", "invalid_json")
    return data


def parse_chat_request(data: Mapping[str, Any]) -> ChatRequest:
    """Check a chat-completions body; a 400 naming the first bad field."""
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise APIError(400, "model: required, a string naming the served model (see GET /v1/models)",
                       "missing_model", "model")
    effort = data.get("reasoning_effort")
    if effort is not None and effort not in EFFORT_N:
        raise APIError(400, f"reasoning_effort: {effort!r} is not allowed; expected {' | '.join(EFFORT_N)}",
                       "invalid_value", "reasoning_effort")
    n = data.get("n")
    if n is not None and n != 1:
        raise APIError(400, f"n: {n!r} is not allowed; a search returns one choice (n: 1). For more samples "
                       "set reasoning_effort or search.best_of_n.n", "invalid_value", "n")
    search = data.get("search") or {}
    if not isinstance(search, dict):
        raise APIError(400, f"search: expected an object of search keys, got {type(search).__name__}",
                       "invalid_value", "search")
    for key in SERVER_KEYS:
        if key in search:
            raise APIError(400, f"search.{key}: set by the server's --config, not per request", "invalid_value",
                           f"search.{key}")
    stream = data.get("stream") or False
    options = data.get("stream_options") or {}
    if not isinstance(stream, bool) or not isinstance(options, dict):
        raise APIError(400, "stream: expected true or false, stream_options an object", "invalid_value", "stream")
    return ChatRequest(model, last_user_message(data.get("messages")), effort, _fields(data), search, stream,
                       bool(options.get("include_usage")))


def last_user_message(messages: Any) -> str:
    """The text of the last message whose role is user: the problem the search solves."""
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "messages: required, a non-empty list of {role, content} objects", "invalid_value",
                       "messages")
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            text = _content_text(message.get("content"))
            if not text.strip():
                raise APIError(400, "messages: the last user message is empty; put the problem in it",
                               "invalid_value", "messages")
            return text
    raise APIError(400, "messages: no message has role 'user'; put the problem in a user message",
                   "invalid_value", "messages")


def _content_text(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(part, dict) for part in content):
        if all(part.get("type") == "text" and isinstance(part.get("text"), str) for part in content):
            return "".join(part["text"] for part in content)
    raise APIError(400, "messages: a user message's content must be text (a string or text parts)",
                   "invalid_value", "messages")


def _fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted search keys for the OpenAI fields that mean the same for a search."""
    fields = {dotted: data[name] for name, dotted in SAMPLING_FIELDS.items() if data.get(name) is not None}
    tokens = [data[name] for name in TOKEN_FIELDS if data.get(name) is not None]
    if tokens:
        fields["budget.tokens"] = tokens[0]
    return fields


# -- responses -----------------------------------------------------------------------------------


def finish_reason(solution: Solution) -> str:
    """stop: the chosen path ended by itself; length: a step, the context or the budget cut it."""
    tree = solution.tree
    chosen = tree.chosen
    if chosen == NO_NODE:  # the search finished no path
        return "length"
    cut = StepEnd(int(tree.end[chosen])) in (StepEnd.LENGTH, StepEnd.CONTEXT) or not tree.terminal[chosen]
    return "length" if cut else "stop"


def search_field(solution: Solution, path_score: float, completion_id: str) -> dict[str, Any]:
    """The extra ``search`` field: what found the answer and what it cost (clients ignore it)."""
    stats = solution.stats
    return {
        "method": solution.method, "answer": solution.answer, "score": solution.score, "path_score": path_score,
        "generated_tokens": stats.generated_tokens, "forwarded_tokens": stats.forwarded_tokens,
        "expansions": stats.expansions, "unspent_tokens": stats.unspent_tokens,
        "duplicate_tokens": stats.duplicate_tokens, "seconds": round(stats.seconds, 4),
        "tree": f"/v1/trees/{completion_id}",
    }


def usage(solution: Solution) -> dict[str, int]:
    """Prompt tokens, and as completion tokens every token the search generated."""
    prompt = int(solution.tree.token_len[0])
    generated = solution.stats.generated_tokens
    return {"prompt_tokens": prompt, "completion_tokens": generated, "total_tokens": prompt + generated}


def completion_body(solution: Solution, model: str, completion_id: str, path_score: float) -> dict[str, Any]:
    """A ``chat.completion`` object with one choice, usage, and the ``search`` field."""
    return {
        "id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": solution.text},
                     "logprobs": None, "finish_reason": finish_reason(solution)}],
        "usage": usage(solution), "search": search_field(solution, path_score, completion_id),
    }


def stream_events(solution: Solution, model: str, completion_id: str, path_score: float,
                  include_usage: bool) -> Iterator[str]:
    """The answer as ``chat.completion.chunk`` server-sent events: the role, one chunk per
    reasoning step of the chosen path, the finish reason (with the ``search`` field), the
    usage when asked, then ``[DONE]``."""
    created = int(time.time())

    def chunk(delta: dict, reason: str | None = None, **extra: Any) -> str:
        body = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}], **extra}
        return f"data: {json.dumps(body)}\n\n"

    tree = solution.tree
    yield chunk({"role": "assistant", "content": ""})
    for node in tree.path(tree.chosen)[1:] if tree.chosen != NO_NODE else ():
        yield chunk({"content": tree.texts[node]})
    yield chunk({}, finish_reason(solution), search=search_field(solution, path_score, completion_id))
    if include_usage:
        body = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [], "usage": usage(solution)}
        yield f"data: {json.dumps(body)}\n\n"
    yield "data: [DONE]\n\n"
