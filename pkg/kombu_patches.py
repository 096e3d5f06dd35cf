"""A targeted workaround for a kombu Redis-transport crash, applied on import.

When the broker connection drops while a worker holds unacked messages (ETA/countdown tasks,
prefetched tasks with late ack), closing the dead channel tries to put them back on the queue
through a connection that no longer exists, and raises ``AttributeError: 'NoneType' object has
no attribute 'hostname'`` (kombu's ``Channel._connparams``). The consumer treats that as an
unrecoverable error and the whole worker exits instead of reconnecting (the class of bug of
kombu #582 and #970).

Here the worker survives instead: the delivery tags it could not restore are remembered (the
messages themselves stay in Redis's unacked set, persisted with AOF), and the first
unacked-restore sweep after the reconnect puts exactly those back on their queues, so ETA tasks
run close to their time instead of an hour later when the visibility timeout expires.
Remove this module once kombu handles it (tests/faults/test_redis_restart.py shows it).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)

_original_restore_unacked: Any = kombu_redis.QoS.restore_unacked
_original_restore_visible: Any = kombu_redis.QoS.restore_visible
_orphaned: set[str] = set()
_orphaned_lock = threading.Lock()


def _restore_unacked(self: Any, client: Any = None) -> Any:
    try:
        return _original_restore_unacked(self, client)
    except AttributeError:
        with _orphaned_lock:
            _orphaned.update(self._delivered)
        log.warning(
            "broker connection lost: %d unacknowledged message(s) will be requeued after "
            "the reconnect",
            len(self._delivered),
        )
        self._delivered.clear()
        return None


def _restore_visible(self: Any, *args: Any, **kwargs: Any) -> Any:
    with _orphaned_lock:
        tags = list(_orphaned)
        _orphaned.clear()
    for tag in tags:
        try:
            self.restore_by_tag(tag, leftmost=True)
        except Exception:  # still disconnected: try again at the next sweep
            with _orphaned_lock:
                _orphaned.add(tag)
    if tags:
        log.warning("requeued %d message(s) left unacknowledged by the lost connection", len(tags))
    return _original_restore_visible(self, *args, **kwargs)


def apply() -> None:
    kombu_redis.QoS.restore_unacked = _restore_unacked  # type: ignore[method-assign]
    kombu_redis.QoS.restore_visible = _restore_visible  # type: ignore[method-assign]


apply()
