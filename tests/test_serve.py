"""reflective-search serve: the real openai client against a real server on 127.0.0.1.

The server runs in-process (uvicorn on a port the OS picked) with the shipped countdown-tiny
model; the SIGTERM test runs it as a subprocess. Answers are compared with the same search
run in process by ``ReflectiveSearch.solve`` on a second copy of the model. Waits are hang
guards, never timings.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

from reflective_search.facade import ReflectiveSearch  # noqa: E402
from reflective_search.model.reflective import ReflectiveModel  # noqa: E402
from reflective_search.serve import make_app  # noqa: E402

MODEL = "countdown-tiny"
PROBLEMS = ["Use 3, 5, 7 to make 22.", "Use 2, 4, 6 to make 14.", "Use 1, 8, 9 to make 18.",
            "Use 5, 6, 2 to make 16.", "Use 4, 7, 3 to make 25.", "Use 9, 2, 3 to make 15."]
HANG_GUARD = 300  # seconds: a wait that lasts this long means the server hangs
LOW = {"method": "best_of_n", "best_of_n": {"n": 2}}  # what reasoning_effort: low runs


@contextmanager
def live_server(config: str | None = None):
    """A server on 127.0.0.1 at a free port, stopped on exit; yields (base url, engine)."""
    app, engine, _serve = make_app(ReflectiveModel.from_pretrained(MODEL), MODEL, config)
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + HANG_GUARD
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", engine
    finally:
        server.should_exit = True
        thread.join(HANG_GUARD)


@pytest.fixture(scope="module")
def server():
    with live_server() as running:
        yield running


@pytest.fixture(scope="module")
def reference():
    """The in-process oracle: a second copy of the model, solving with ``ReflectiveSearch``."""
    model = ReflectiveModel.from_pretrained(MODEL)
    return lambda overrides, problem: ReflectiveSearch(model, overrides).solve(problem)


def client(url: str) -> "openai.OpenAI":
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0,
                         http_client=httpx.Client(trust_env=False, timeout=HANG_GUARD))


def ask(url: str, problem: str, **options):
    return client(url).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": problem}], **options)


def post(url: str, body, timeout: float = HANG_GUARD) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    with httpx.Client(trust_env=False, timeout=timeout) as http:
        return http.post(f"{url}/v1/chat/completions", content=content, headers={"content-type": "application/json"})


def health(url: str) -> dict:
    with httpx.Client(trust_env=False, timeout=HANG_GUARD) as http:
        return http.get(f"{url}/health").json()


def assert_same(response, solution) -> None:
    """A completion carries exactly what solve found and spent."""
    extra = response.model_dump()["search"]
    assert response.choices[0].message.content == solution.text
    assert extra["answer"] == solution.answer and extra["method"] == solution.method
    assert extra["score"] == pytest.approx(solution.score, abs=1e-5)
    assert response.usage.completion_tokens == solution.stats.generated_tokens
    assert response.usage.prompt_tokens == int(solution.tree.token_len[0])
    assert (extra["forwarded_tokens"], extra["expansions"]) == (solution.stats.forwarded_tokens, solution.stats.expansions)


# -- what a request asks for ---------------------------------------------------------------------


def test_models_lists_the_served_model(server):
    url, _ = server
    assert [model.id for model in client(url).models.list()] == [MODEL]
    assert health(url)["status"] == "ok"


@pytest.mark.parametrize("effort,n", [("low", 2), ("medium", 8), ("high", 32)])
def test_reasoning_effort_runs_best_of_n_as_solve_does(server, reference, effort, n):
    url, _ = server
    response = ask(url, PROBLEMS[0], reasoning_effort=effort)
    assert response.choices[0].finish_reason == "stop"
    assert_same(response, reference({"method": "best_of_n", "best_of_n": {"n": n}}, PROBLEMS[0]))


def test_extra_body_search_settings_take_effect(server, reference):
    url, _ = server
    response = ask(url, PROBLEMS[1], reasoning_effort="low", extra_body={"search": {"best_of_n": {"n": 3}}})
    assert_same(response, reference({"method": "best_of_n", "best_of_n": {"n": 3}}, PROBLEMS[1]))
    greedy = ask(url, PROBLEMS[1], extra_body={"search": {"method": "greedy"}})
    assert greedy.model_dump()["search"]["method"] == "greedy"
    assert_same(greedy, reference({"method": "greedy"}, PROBLEMS[1]))


def test_seed_and_temperature_mean_what_they_mean_for_solve(server, reference):
    url, _ = server
    response = ask(url, PROBLEMS[2], reasoning_effort="low", seed=7, temperature=1.2)
    solution = reference({**LOW, "seed": 7, "sampling": {"temperature": 1.2}}, PROBLEMS[2])
    assert_same(response, solution)
    assert_same(ask(url, PROBLEMS[2], reasoning_effort="low", seed=7, temperature=1.2), solution)


def test_max_completion_tokens_is_the_search_budget(server, reference):
    url, _ = server
    response = ask(url, PROBLEMS[3], max_completion_tokens=48, extra_body={"search": {"method": "mcts"}})
    assert_same(response, reference({"method": "mcts", "budget": {"tokens": 48}}, PROBLEMS[3]))


def test_stream_sends_the_chosen_answer_once_the_search_ends(server, reference):
    url, _ = server
    chunks = list(ask(url, PROBLEMS[0], reasoning_effort="low", stream=True, stream_options={"include_usage": True}))
    solution = reference(LOW, PROBLEMS[0])
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == solution.text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == solution.stats.generated_tokens
    assert len({c.id for c in chunks}) == 1


def test_tree_of_a_recent_request_is_served_as_json(server):
    url, _ = server
    response = post(url, {"model": MODEL, "messages": [{"role": "user", "content": PROBLEMS[0]}],
                          "reasoning_effort": "low"}).json()
    with httpx.Client(trust_env=False, timeout=HANG_GUARD) as http:
        tree = http.get(f"{url}{response['search']['tree']}").json()
        missing = http.get(f"{url}/v1/trees/chatcmpl-none")
    assert tree["size"] >= 3 and tree["chosen"] > 0
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "tree_not_found"


# -- bad input: an OpenAI error body, and the server goes on -------------------------------------


def _chat(**fields) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": PROBLEMS[0]}], "reasoning_effort": "low", **fields}


BAD_REQUESTS = [  # (body, status, code, words of the message)
    (b'{"model": "countdown-tiny", "messages": [', 400, "invalid_json", "not valid JSON"),
    (b'[1, 2]', 400, "invalid_json", "must be a JSON object, got list"),
    (_chat(messages=[{"role": "system", "content": "be brief"}]), 400, "invalid_value", "no message has role 'user'"),
    (_chat(messages=[]), 400, "invalid_value", "non-empty list"),
    (_chat(search={"mcst": {"children": 2}}), 400, "invalid_search_config", "unknown key 'mcst' (did you mean 'mcts'?)"),
    (_chat(search={"sampling": {"temprature": 0.5}}), 400, "invalid_search_config",
     "unknown key 'sampling.temprature' (did you mean 'temperature'?)"),
    (_chat(temperature=-1), 400, "invalid_search_config", "sampling.temperature: -1"),
    (_chat(search={"expander_options": {"max_rows": 1}}), 400, "invalid_value", "set by the server's --config"),
    (_chat(reasoning_effort="extreme"), 400, "invalid_value", "expected low | medium | high"),
    (_chat(n=3), 400, "invalid_value", "a search returns one choice"),
    (_chat(model="gpt-4o"), 404, "model_not_found", "the model 'gpt-4o' does not exist here"),
    (_chat(messages=[{"role": "user", "content": "7 " * 400}]), 400, "context_length_exceeded",
     "the model's context is 256 tokens"),
    (_chat(messages=[{"role": "user", "content": "   "}]), 400, "invalid_value", "the last user message is empty"),
    (b"{" + b" " * (2 << 20) + b"}", 413, "request_too_large", "this server takes at most 1048576"),
]


@pytest.mark.parametrize("body,status,code,words", BAD_REQUESTS, ids=[b[3][:30] for b in BAD_REQUESTS])
def test_bad_request_gets_an_openai_error_and_the_server_goes_on(server, body, status, code, words):
    url, _ = server
    response = post(url, body)
    error = response.json()["error"]
    assert (response.status_code, error["code"]) == (status, code)
    assert words in error["message"] and set(error) == {"message", "type", "param", "code"}
    assert health(url)["status"] == "ok"


def test_unknown_model_raises_not_found_in_the_openai_client(server):
    url, _ = server
    with pytest.raises(openai.NotFoundError, match="does not exist here"):
        client(url).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": PROBLEMS[0]}])


def test_full_queue_answers_429(tmp_path):
    config = tmp_path / "serve.yaml"
    config.write_text("server:\n  queue_limit: 1\n")
    with live_server(str(config)) as (url, engine):
        first = threading.Thread(target=post, args=(url, _chat(reasoning_effort="high")))
        first.start()
        _wait(lambda: engine.held == 1)
        busy = post(url, _chat())
        first.join(HANG_GUARD)
        assert busy.status_code == 429 and busy.json()["error"]["code"] == "queue_full"
        assert post(url, _chat()).status_code == 200  # the queue emptied: served again


# -- one engine for every client -----------------------------------------------------------------


def _wait(condition, guard: float = HANG_GUARD) -> None:
    deadline = time.monotonic() + guard
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.02)


def test_client_disconnect_cancels_its_search_and_frees_its_kv(server, reference):
    """The client closes its connection once its search is held by the engine: a search of
    1,024 samples, far from done then, whatever the machine's load."""
    url, engine = server
    assert health(url)["kv_segments"] == 0
    cancelled, other = engine.cancelled, {}
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps(_chat(search={"best_of_n": {"n": 1024}})).encode()
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    survivor = threading.Thread(target=lambda: other.update(response=ask(url, PROBLEMS[4], reasoning_effort="low")))
    with socket.create_connection((host, int(port)), timeout=HANG_GUARD) as client:
        client.sendall(request)
        _wait(lambda: engine.held >= 1)
        survivor.start()
    survivor.join(HANG_GUARD)
    _wait(lambda: engine.cancelled == cancelled + 1)
    _wait(lambda: health(url)["kv_segments"] == 0 and engine.held == 0)
    assert_same(other["response"], reference(LOW, PROBLEMS[4]))


def test_concurrent_requests_give_the_sequential_answers(server):
    url, engine = server
    mixed = [({"reasoning_effort": "low"} if i % 2 else
              {"max_completion_tokens": 40, "extra_body": {"search": {"method": "mcts"}}}) for i in range(len(PROBLEMS))]
    forwards = engine.expander.engine.forwards
    sequential = [ask(url, problem, **options) for problem, options in zip(PROBLEMS, mixed)]
    alone = engine.expander.engine.forwards - forwards

    async def together():
        aclient = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0,
                                     http_client=httpx.AsyncClient(trust_env=False, timeout=HANG_GUARD))
        return await asyncio.gather(*[
            aclient.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": problem}], **options)
            for problem, options in zip(PROBLEMS, mixed)])

    forwards = engine.expander.engine.forwards
    concurrent = asyncio.run(together())
    shared = engine.expander.engine.forwards - forwards
    for one, other in zip(sequential, concurrent):
        assert one.choices[0].message.content == other.choices[0].message.content
        assert one.usage == other.usage
        assert one.model_dump()["search"]["score"] == pytest.approx(other.model_dump()["search"]["score"], abs=1e-5)
    assert shared < alone  # their searches shared forwards


# -- the command ---------------------------------------------------------------------------------


def test_sigterm_during_load_finishes_the_searches_and_exits_0():
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "reflective_search.cli", "serve", "--model", MODEL, "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline()
        assert line.startswith(f"serving {MODEL} on http://127.0.0.1:"), line + process.stderr.read()
        url = line.split()[-1].removesuffix("/v1")
        results: list[int] = []
        clients = [threading.Thread(target=lambda p=p: results.append(post(url, _chat(messages=[
            {"role": "user", "content": p}], reasoning_effort="medium")).status_code)) for p in PROBLEMS[:3]]
        for thread in clients:
            thread.start()
        _wait(lambda: health(url)["requests_in_engine"] + len(results) == 3)  # all three admitted
        process.send_signal(signal.SIGTERM)
        assert process.wait(HANG_GUARD) == 0
        for thread in clients:
            thread.join(HANG_GUARD)
        assert results == [200, 200, 200]  # in flight at SIGTERM: finished, not dropped
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# -- the serve YAML ------------------------------------------------------------------------------


@pytest.mark.parametrize("text,words", [
    ("serch: {}\n", "unknown section 'serch' (did you mean 'search'?)"),
    ("efforts:\n  extreme: {method: mcts}\n", "efforts: unknown effort 'extreme'; expected low | medium | high"),
    ("efforts:\n  high: {mcts: {chidren: 8}}\n", "unknown key 'mcts.chidren' (did you mean 'children'?)"),
    ("server:\n  queue_limt: 4\n", "unknown key 'server.queue_limt' (did you mean 'queue_limit'?)"),
    ("server:\n  queue_limit: 0\n", "server.queue_limit: 0 is not allowed"),
])
def test_serve_config_refuses_bad_keys_in_one_line(tmp_path, text, words):
    from reflective_search.errors import ConfigError
    from reflective_search.serve.config import load_serve_config

    path = tmp_path / "serve.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_serve_config(path)
    assert words in str(error.value) and "\n" not in str(error.value)


def test_effort_table_and_search_section_layer_under_the_request(tmp_path):
    from reflective_search.serve.config import load_serve_config, request_overrides

    path = tmp_path / "serve.yaml"
    path.write_text("search: {seed: 3}\nefforts:\n  high: {method: mcts, budget: {tokens: 512}}\n")
    serve = load_serve_config(path)
    assert request_overrides(serve, "high", {"budget.tokens": 64}, {"mcts": {"children": 2}}) == {
        "seed": 3, "method": "mcts", "budget": {"tokens": 64}, "mcts": {"children": 2}}
    assert request_overrides(serve, "low", {}, {}) == {"seed": 3, "method": "best_of_n", "best_of_n": {"n": 2}}
    assert request_overrides(serve, None, {"seed": 9}, {}) == {"seed": 9}


def test_the_reference_expander_cannot_serve(tmp_path):
    from reflective_search.errors import ConfigError

    path = tmp_path / "serve.yaml"
    path.write_text("search: {expander: reference}\n")
    with pytest.raises(ConfigError, match="serve needs the shared expander"):
        make_app(ReflectiveModel.from_pretrained(MODEL), MODEL, path)
