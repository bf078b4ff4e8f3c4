"""The ASGI app factory for ``viarah web --workers N`` (uvicorn imports it in each worker).

Each uvicorn worker process configures its logging like ``viarah web`` does, then builds
its own settings and container through the web's own factory.
"""

from __future__ import annotations

from typing import Any

from viarah.entrypoints.worker.status import configure_logging
from viarah.settings import load_settings


def app_factory() -> Any:
    """A fresh web app on a fresh container (``uvicorn --factory``)."""
    from viarah.entrypoints.web.asgi import app_from_environment

    configure_logging(load_settings().log_level)
    return app_from_environment()
