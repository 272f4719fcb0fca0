"""``reflective-search serve``: an OpenAI-compatible HTTP server whose reasoning effort is search.

``protocol`` reads and writes OpenAI's wire format, ``config`` layers each request's search
config, ``engine`` runs every request's search in one continuously batched engine thread,
and ``app`` is the FastAPI app over them. Imports FastAPI only through ``app``.
"""

from __future__ import annotations

from pathlib import Path


def make_app(model, model_name: str, config_path: str | Path | None = None):
    """The app and its engine for ``model`` served as ``model_name`` (the engine starts with
    the app). ``config_path``: a serve YAML (see ``serve.config``)."""
    from reflective_search.config import load_search_config
    from reflective_search.expand import make_expander
    from reflective_search.serve.app import build_app
    from reflective_search.serve.config import load_serve_config
    from reflective_search.serve.engine import SearchEngine

    defaults = dict(getattr(getattr(model, "settings", None), "search_defaults", ()))
    serve = load_serve_config(config_path, defaults)
    config = load_search_config(dict(serve.search), defaults)
    engine = SearchEngine(model, make_expander(config.expander, model, config), serve.server.queue_limit)
    return build_app(model_name, engine, serve, defaults), engine, serve


__all__ = ["make_app"]
