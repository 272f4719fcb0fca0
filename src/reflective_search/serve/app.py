"""The FastAPI app: OpenAI's chat completions answered by search, through one engine.

Handlers parse and check a request (``protocol``, ``config``), queue its search on the
engine (``engine``) and wait for it, watching the connection: a client that goes away
cancels its search, whose KV is freed at once. Every refusal is an OpenAI error body;
nothing a request sends reaches another request's search or stops the server.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from contextlib import asynccontextmanager
from typing import Any, Mapping

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from reflective_search.config import load_search_config
from reflective_search.errors import ConfigError, ProblemError
from reflective_search.search.common import trajectory_score
from reflective_search.serve.config import ServeConfig, request_overrides
from reflective_search.serve.engine import Cancelled, Job, PromptTooLong, QueueFull, SearchEngine, Stopping, live_segments
from reflective_search.serve.protocol import (
    APIError, completion_body, parse_chat_request, parse_json, stream_events,
)
from reflective_search.tree import NO_NODE


def build_app(model_name: str, engine: SearchEngine, serve: ServeConfig, defaults: Mapping[str, Any]) -> FastAPI:
    """The app serving ``engine``'s model as ``model_name``; it starts the engine on startup
    and stops it (``serve.server.stop_timeout_s``) on shutdown. ``defaults``: the model's
    search defaults (dotted keys)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        engine.start()
        yield
        await asyncio.to_thread(engine.stop, serve.server.stop_timeout_s)

    app = FastAPI(title="reflective-search", lifespan=lifespan)
    trees: OrderedDict[str, Any] = OrderedDict()  # completion id -> its search tree (the latest few)
    created = int(time.time())

    @app.exception_handler(APIError)
    async def _api_error(_request: Request, error: APIError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(HTTPException)
    async def _http_error(_request: Request, error: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return JSONResponse(APIError(error.status_code, str(error.detail), code).body(), status_code=error.status_code)

    @app.exception_handler(Exception)
    async def _internal(_request: Request, error: Exception) -> JSONResponse:
        body = APIError(500, f"internal error ({type(error).__name__}); the server goes on serving", "internal_error",
                        kind="server_error").body()
        return JSONResponse(body, status_code=500)

    @app.get("/health")
    async def health() -> JSONResponse:
        status = 503 if engine.crashed is not None else 200
        return JSONResponse({"status": "ok" if status == 200 else "engine stopped", "model": model_name,
                             "requests_in_engine": engine.held, "cancelled_requests": engine.cancelled,
                             "kv_segments": live_segments(engine.expander)},
                            status_code=status)

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": created,
                                            "owned_by": "reflective-search"}]}

    @app.get("/v1/trees/{completion_id}")
    async def tree(completion_id: str) -> Response:
        if completion_id not in trees:
            raise APIError(404, f"no tree for {completion_id!r}: the server keeps the latest "
                           f"{serve.server.trees_kept} requests' trees", "tree_not_found", "id")
        return Response(trees[completion_id].to_json(), media_type="application/json")

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        chat = parse_chat_request(parse_json(await read_body(request, serve.server.max_body_bytes)))
        if chat.model != model_name:
            raise APIError(404, f"the model {chat.model!r} does not exist here; this server serves {model_name!r}",
                           "model_not_found", "model")
        overrides = request_overrides(serve, chat.effort, chat.fields, chat.search)
        try:
            config = load_search_config(overrides, dict(defaults))
        except ConfigError as error:
            raise APIError(400, f"search config: {error}", "invalid_search_config", "search") from None
        job = _submit(engine, Job(chat.problem, overrides))
        solution = await wait_for(engine, job, request)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        _keep(trees, completion_id, solution.tree, serve.server.trees_kept)
        score = path_score(solution, config)
        if chat.stream:
            return StreamingResponse(stream_events(solution, model_name, completion_id, score, chat.include_usage),
                                     media_type="text/event-stream")
        return JSONResponse(completion_body(solution, model_name, completion_id, score))

    return app


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or a 413 as soon as it passes ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"the body is {declared} bytes; this server takes at most {limit}", "request_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise APIError(413, f"the body passes {limit} bytes, the most this server takes", "request_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _submit(engine: SearchEngine, job: Job) -> Job:
    try:
        return engine.submit(job)
    except QueueFull as error:
        raise APIError(429, f"the server is busy: {error}; retry later", "queue_full", kind="rate_limit_error") from None
    except Stopping:
        raise APIError(503, "the server is stopping and takes no new requests", "server_stopping",
                       kind="server_error") from None


async def wait_for(engine: SearchEngine, job: Job, request: Request):
    """The job's Solution; its search is cancelled if the client goes away (or this task is
    cancelled, as at shutdown). A failed search becomes the matching API error."""
    future = asyncio.wrap_future(job.future)
    try:
        while not future.done():
            await asyncio.wait({future}, timeout=0.25)
            if not future.done() and await request.is_disconnected():
                engine.cancel(job)
                raise APIError(499, "the client closed the connection", "client_closed")
        return future.result()
    except (PromptTooLong, ProblemError) as error:
        code = "context_length_exceeded" if isinstance(error, PromptTooLong) else "invalid_value"
        raise APIError(400, str(error), code, "messages") from None
    except ConfigError as error:
        raise APIError(400, f"search config: {error}", "invalid_search_config", "search") from None
    except Cancelled as error:
        raise APIError(503, f"the search was cancelled: {error}", "cancelled", kind="server_error") from None
    finally:
        if not future.done():
            engine.cancel(job)


def path_score(solution, config) -> float:
    """The SPRM's score of the chosen path, aggregated as the method ranks paths (geometric
    mean for a method with no aggregate of its own)."""
    if solution.tree.chosen == NO_NODE:
        return 0.0
    aggregate = getattr(getattr(config, config.method, None), "aggregate", "geometric")
    return float(trajectory_score(solution.tree, solution.tree.chosen, aggregate))


def _keep(trees: OrderedDict, key: str, tree, kept: int) -> None:
    """Remember a tree, forgetting the oldest past ``kept``. Mutates ``trees``."""
    trees[key] = tree
    while len(trees) > kept:
        trees.popitem(last=False)
