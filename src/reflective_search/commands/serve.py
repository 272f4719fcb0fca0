"""``reflective-search serve``: an OpenAI-compatible HTTP server whose reasoning effort is search."""

from __future__ import annotations

import argparse
import signal
import socket
import sys

from reflective_search.commands import add_command


def register(subparsers) -> None:
    parser = add_command(subparsers, "serve", "serve a model over an OpenAI-compatible HTTP API",
                         "POST /v1/chat/completions answers the last user message by search: reasoning_effort "
                         "low, medium or high runs Best-of-N with n = 2, 8 or 32 (or the --config's efforts), and a "
                         "'search' object in the body sets any search key. Concurrent requests share one "
                         "continuously batched engine. SIGTERM finishes the searches in flight, then exits 0.")
    parser.add_argument("--model", help="a saved model directory, a shipped model's or a base model's name "
                                         "(default: the shipped model); clients name it as given")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port to bind (default: 8000; 0: a free one, printed)")
    parser.add_argument("--config", help="a serve YAML: sections search, efforts and server")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from reflective_search.default_model import DEFAULT_MODEL_NAME, load_default_model
    from reflective_search.errors import ConfigError
    from reflective_search.serve import make_app
    from reflective_search.serve.config import load_serve_config

    load_serve_config(args.config)  # refuse a bad file before loading a model
    try:
        sock = socket.create_server((args.host, args.port))
    except OSError as error:
        raise ConfigError(f"cannot bind {args.host}:{args.port} ({error.strerror}); pick another --port") from None
    model = load_default_model(args.model)
    name = args.model or DEFAULT_MODEL_NAME
    app, _engine, serve = make_app(model, name, args.config)
    host, port = sock.getsockname()[:2]
    print(f"serving {name} on http://{host}:{port}/v1", flush=True)
    # uvicorn re-raises the SIGTERM it caught once it has shut down; a handler of our own
    # takes it, so a graceful stop exits 0
    signal.signal(signal.SIGTERM, lambda *_: None)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=serve.server.stop_timeout_s)
    uvicorn.Server(config).run(sockets=[sock])
    print("stopped", file=sys.stderr)
    return 0
