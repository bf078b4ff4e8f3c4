"""A zero-argument app factory for ASGI servers that import the app by name.

``uvicorn --factory viarah.entrypoints.web.asgi:app_from_environment --workers 4``: each
worker process reads the configuration and builds its own container (one per event loop).
"""

from __future__ import annotations

from litestar import Litestar

from viarah.container import build_container
from viarah.entrypoints.heap import freeze_when_started
from viarah.entrypoints.web.app import create_app
from viarah.settings import load_settings


def app_from_environment() -> Litestar:
    """The HTTP API configured from the environment (and ``.env``); refuses bad settings."""
    settings = load_settings().require_valid()
    # Last startup hook: what startup built is long-lived (entrypoints/heap.py).
    return create_app(build_container(settings), on_startup=[freeze_when_started])
