"""kombu's Redis transport, made to survive a Redis restart while a task is running.

On a lost connection Celery's consumer closes it twice (``collect()``, then ``close()``).
The first pass detaches the transport from its ``Connection``; when the second pass
reaches a channel that still holds an unacknowledged (``acks_late``) message, kombu builds
a new connection pool from the detached ``client`` and raises ``AttributeError``. Celery
counts that as unrecoverable and the worker exits instead of reconnecting
(tests/integration/test_faults.py reproduces it under CPU load). Raising a connection
error there instead lets kombu's own "ignore connection errors while closing" paths take
it: the message is not restored, which is harmless because the database, not the broker,
says what is due, and the next tick dispatches it again.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

#: ``broker_transport`` for redis:// and rediss:// broker URLs.
TRANSPORT = "worker.broker:Transport"


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection was closed")
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)  # type: ignore[no-untyped-call]
        return params


class Transport(kombu_redis.Transport):
    Channel = Channel
