"""Task events published a few times a second, not once per event-loop turn.

Celery's worker buffers task events (received, started, succeeded...) and publishes each
buffer as one ``task.multi`` message, but asks for that flush on the very next loop turn for
every event it buffers: under load, one PUBLISH round trip per event, in the worker's main
process, which does every broker round trip of every task. Measured with task events on (what
Flower's task list and task metrics need): 40% of the main process's samples published
events, 27% waited on PUBLISH. ``ThrottledEventDispatcher`` publishes the buffer at most every
``FLUSH_INTERVAL`` seconds; the events are the same, in the same order, up to that much later.
Selected through Celery's own seam (``Celery(events=...)``, whose ``dispatcher_cls`` names the
class); nothing of Celery is patched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from celery.app.events import Events
from celery.events.dispatcher import EventDispatcher
from kombu.asynchronous import get_event_loop

# Seconds a buffered task event may wait before it is published (Flower sees it this late).
FLUSH_INTERVAL = 0.2
# Events one message may carry before it is published early. Celery's 24 means a flush every
# eight tasks under load, each a PUBLISH the main process waits on; this many makes the timer
# the usual trigger up to about 800 tasks/s, in messages of at most about 250 KB.
BUFFER_LIMIT = 500


class ThrottledEventDispatcher(EventDispatcher):  # type: ignore[misc]
    def __init__(
        self, *args: Any, on_send_buffered: Callable[[], None] | None = None, **kwargs: Any
    ) -> None:
        self._request_flush = on_send_buffered
        self._flush_scheduled = False
        kwargs.setdefault("buffer_limit", BUFFER_LIMIT)
        super().__init__(
            *args, on_send_buffered=self._buffered if on_send_buffered else None, **kwargs
        )

    def _buffered(self) -> None:
        """An event was buffered: have the buffer flushed ``FLUSH_INTERVAL`` from now, unless
        that is arranged already (no event loop: at once, as Celery would)."""
        if self._flush_scheduled or self._request_flush is None:
            return
        hub = get_event_loop()
        if hub is None:
            self._request_flush()
            return
        self._flush_scheduled = True
        hub.call_later(FLUSH_INTERVAL, self._due)  # type: ignore[no-untyped-call]

    def _due(self) -> None:
        self._flush_scheduled = False
        if self._request_flush is not None:
            self._request_flush()

    def close(self) -> None:
        """Publish what is still buffered before the publishing path closes (a stopping
        worker's last events); a broker that is gone by then loses them, as before."""
        with contextlib.suppress(Exception):
            self.flush(errors=False, groups=True)
        super().close()


class ThrottledEvents(Events):  # type: ignore[misc]
    dispatcher_cls = "pkg.task_events:ThrottledEventDispatcher"
