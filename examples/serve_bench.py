"""What serving costs: 16 concurrent openai clients against the same 16 requests one by one.

    python examples/serve_bench.py --model countdown-tiny --effort medium [--method mcts] [--requests 16]

Starts ``reflective-search serve``'s app in this process on 127.0.0.1 (a port the OS picks;
nothing leaves the machine) and prints one JSON object:

* ``throughput``: requests per second with every request sent at once (``AsyncOpenAI``)
  against the same requests sent one after another, and their ratio;
* ``latency_s``: p50 / p95 seconds per request at 1, 4 and 16 clients at once;
* ``overhead``: one request through HTTP against the same search run by
  ``ReflectiveSearch.solve`` in process, in CPU seconds of this process (client and server
  both live here, so the HTTP side counts the client's CPU too), the median of ``--repeats``.

Every run of a request is the same search with the same seed, so each row does the same work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import threading
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="countdown-tiny")
    parser.add_argument("--effort", default="medium", choices=("low", "medium", "high"),
                        help="reasoning_effort of every request (Best-of-2/8/32)")
    parser.add_argument("--method", help="a search method instead of the effort's Best-of-N (e.g. mcts)")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="overhead: requests measured each way")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    import httpx
    import openai
    import uvicorn

    from reflective_search.bench.smol import countdown_problems
    from reflective_search.facade import ReflectiveSearch
    from reflective_search.model.reflective import ReflectiveModel
    from reflective_search.serve import make_app

    problems = countdown_problems(args.requests)
    options = {"extra_body": {"search": {"method": args.method}}} if args.method else {"reasoning_effort": args.effort}
    app, engine, serve = make_app(ReflectiveModel.from_pretrained(args.model), args.model)
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"

    async def timed(client, problem: str) -> float:
        start = time.perf_counter()
        await client.chat.completions.create(model=args.model, messages=[{"role": "user", "content": problem}],
                                             **options)
        return time.perf_counter() - start

    async def at_once(width: int) -> tuple[float, list[float]]:
        """Every problem, at most ``width`` in flight; (wall seconds, latencies)."""
        client = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0,
                                    http_client=httpx.AsyncClient(trust_env=False, timeout=3600))
        gate = asyncio.Semaphore(width)

        async def one(problem: str) -> float:
            async with gate:
                return await timed(client, problem)

        start = time.perf_counter()
        latencies = await asyncio.gather(*[one(p) for p in problems])
        return time.perf_counter() - start, list(latencies)

    asyncio.run(timed_warmup(url, args.model, problems[0], options))
    runs = {width: asyncio.run(at_once(width)) for width in (1, 4, len(problems))}
    sequential, concurrent = runs[1][0], runs[len(problems)][0]

    overrides = {"method": args.method} if args.method else dict(serve.efforts[args.effort])
    solver = ReflectiveSearch(ReflectiveModel.from_pretrained(args.model), overrides)
    sync = openai.OpenAI(base_url=url, api_key="unused", max_retries=0,
                         http_client=httpx.Client(trust_env=False, timeout=3600))
    http_cpu, solve_cpu = [], []
    for _ in range(args.repeats):
        start = time.process_time()
        sync.chat.completions.create(model=args.model, messages=[{"role": "user", "content": problems[0]}], **options)
        http_cpu.append(time.process_time() - start)
        start = time.process_time()
        solver.solve(problems[0])
        solve_cpu.append(time.process_time() - start)
    server.should_exit = True
    http, solve = statistics.median(http_cpu), statistics.median(solve_cpu)
    print(json.dumps({
        "model": args.model, "search": args.method or f"reasoning_effort {args.effort}", "requests": len(problems),
        "throughput": {"sequential_rps": round(len(problems) / sequential, 4),
                       "concurrent_rps": round(len(problems) / concurrent, 4),
                       "ratio": round(sequential / concurrent, 2)},
        "latency_s": {str(width): {"p50": round(_quantile(lat, 0.5), 3), "p95": round(_quantile(lat, 0.95), 3)}
                      for width, (_wall, lat) in runs.items()},
        "overhead": {"http_cpu_s": round(http, 4), "solve_cpu_s": round(solve, 4),
                     "ratio": round(http / solve - 1, 4)},
    }))


async def timed_warmup(url: str, model: str, problem: str, options: dict) -> None:
    """One request first, so no measured run pays for first-call setup."""
    import httpx
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0,
                                http_client=httpx.AsyncClient(trust_env=False, timeout=3600))
    await client.chat.completions.create(model=model, messages=[{"role": "user", "content": problem}], **options)


def _quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile by linear interpolation between order statistics."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


if __name__ == "__main__":
    main()
