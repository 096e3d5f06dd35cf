"""Flower whose ``/metrics`` asks for the same credentials as its pages when auth is on.

Flower serves ``/metrics`` (task names, worker names and counts) to anyone, even with basic
auth or OAuth configured (flower #1342, and no option changes it in 2.2). ``Flower`` here is a
subclass of Flower's tornado application that routes ``/metrics`` to an authenticated copy of
Flower's own handler; ``/healthcheck`` stays open for probes. Flower builds its application
inside its click command, with no option to choose the class, so ``serve`` runs the same steps
as that command (``flower.command.flower``), with this class.
"""

from __future__ import annotations

import atexit
import contextlib
import signal
import sys
from collections.abc import Sequence
from typing import Any

import tornado.web
from celery import Celery
from flower import command
from flower.app import Flower as FlowerApp
from flower.app import rewrite_handler
from flower.urls import settings
from flower.views.monitor import Metrics
from tornado.options import options as flower_options


class AuthenticatedMetrics(Metrics):  # type: ignore[misc]
    """Flower's metrics handler behind Flower's own check (basic auth: 401; OAuth: login)."""

    @tornado.web.authenticated
    async def get(self) -> None:
        await super().get()


class Flower(FlowerApp):  # type: ignore[misc]
    def __init__(self, options: Any = None, **kwargs: Any) -> None:
        super().__init__(options=options, **kwargs)
        if options is not None and (options.basic_auth or options.auth):
            route = (r"/metrics", AuthenticatedMetrics)
            if options.url_prefix:
                route = rewrite_handler(route, options.url_prefix)
            # Rules added for a host pattern are matched before the application's own.
            self.add_handlers(r".*$", [route])


def serve(app: Celery, argv: Sequence[str]) -> int:
    """Run Flower for ``app`` with Flower's command-line options ``argv`` (FLOWER_* variables
    apply too), as ``celery flower`` would, until SIGTERM. Exit code 2, naming them, for
    options Flower does not know (Flower itself drops them silently)."""
    unknown = [arg for arg in argv if arg.startswith("-") and not command.is_flower_option(arg)]
    if unknown:
        print(f"Error: no such Flower option: {', '.join(unknown)}", file=sys.stderr)
        return 2
    command.apply_env_options()
    command.apply_options("flower", list(argv))
    command.extract_settings()
    command.setup_logging()
    flower = Flower(capp=app, options=flower_options, **settings)
    atexit.register(flower.stop)
    signal.signal(signal.SIGTERM, command.sigterm_handler)
    port = flower.start_http_server()
    command.print_banner(app, "ssl_options" in settings, port)
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        flower.start()
    return 0
