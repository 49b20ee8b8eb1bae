"""``covidtech read-api``: run the read API with uvicorn on ``COVIDTECH_READ_PORT``.

Register it in ``cli/main.py`` with ``main.add_command(read_api)``.

Shutdown: uvicorn waits for open responses before it runs the lifespan's shutdown, and an
alert stream never ends by itself. :class:`ReadApiServer` therefore ends every alert stream
as soon as the signal arrives (clients reconnect elsewhere with their Last-Event-ID), then lets
uvicorn shut down as usual.
"""

from __future__ import annotations

import asyncio
from types import FrameType
from typing import Any

import click
import uvicorn

from covidtech import settings as settings_mod
from covidtech.settings import SettingsError
from covidtech.web import KEEP_ALIVE_S

__all__ = ["ReadApiServer", "read_api"]


class ReadApiServer(uvicorn.Server):
    """uvicorn, ending the alert streams first on SIGINT/SIGTERM."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        app: Any = self.config.app
        services = getattr(getattr(app, "state", None), "services", None)
        if services is not None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                loop.call_soon_threadsafe(services.broadcaster.close_clients)
        super().handle_exit(sig, frame)


@click.command("read-api")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=int, default=None, help="Port (default: COVIDTECH_READ_PORT).")
@click.option(
    "--proxy-headers/--no-proxy-headers",
    default=False,
    show_default=True,
    help="Trust X-Forwarded-For from --forwarded-allow-ips (client address of audit and "
    "rate limits when behind a proxy).",
)
@click.option("--forwarded-allow-ips", default="127.0.0.1", show_default=True)
@click.option(
    "--workers",
    type=int,
    default=1,
    show_default=True,
    help="Worker processes (each has its own revocation list, caches and alert consumer).",
)
@click.option("--log-level", default="info", show_default=True)
def read_api(
    host: str,
    port: int | None,
    proxy_headers: bool,
    forwarded_allow_ips: str,
    workers: int,
    log_level: str,
) -> None:
    """Run the read API (MOH, provinces, tracers, citizens; SSE alert stream)."""
    from api import config as config_mod
    from api.app import create_app

    try:
        settings = settings_mod.get()
        config = config_mod.load()
    except SettingsError as e:
        raise click.ClickException(f"bad setting: {e}") from e
    # What the server is, whether uvicorn's supervisor runs workers or this process serves.
    options: dict[str, Any] = {
        "host": host,
        "port": port or settings.read_port,
        "log_level": log_level,
        "proxy_headers": proxy_headers,
        "forwarded_allow_ips": forwarded_allow_ips,
        "timeout_graceful_shutdown": 10,
        "access_log": False,
        "timeout_keep_alive": KEEP_ALIVE_S,
    }
    if workers > 1:
        # uvicorn's supervisor runs the workers; open alert streams end at the graceful
        # shutdown timeout instead of at once (clients resume with their Last-Event-ID).
        uvicorn.run("api.app:app_from_env", factory=True, workers=workers, **options)
        return
    app = create_app(settings, config=config)
    server = ReadApiServer(uvicorn.Config(app, **options))
    server.run()
