"""The worker's Redis transport turns kombu's detached-connection crash into a connection
error, which Celery and kombu already handle by reconnecting (see worker/broker.py)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu import Connection, Exchange, Queue
from kombu.message import Message

from config.settings import Settings
from tests.conftest import REDIS_URL, require_service
from worker.app import create_app
from worker.broker import TRANSPORT


@pytest.fixture
def probe_queue() -> Iterator[Queue]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        require_service("Redis", exc)
    name = f"probe-{uuid.uuid4().hex}"
    yield Queue(name, Exchange(name), name)
    client.delete(name)


def _unacked_after_a_torn_down_connection(transport: str, queue: Queue) -> tuple[Any, Message]:
    """The state Celery's consumer leaves when Redis goes away while an ``acks_late`` task
    runs: the channel's pools are gone and ``collect()`` has detached the transport."""
    conn = Connection(REDIS_URL, transport=transport)
    conn.Producer().publish(
        {"n": 1}, exchange=queue.exchange, routing_key=queue.name, declare=[queue]
    )
    channel = conn.channel()
    message = queue(channel).get(no_ack=False)
    assert message is not None and message.payload == {"n": 1}
    channel._disconnect_pools()
    conn._do_close_transport()
    return channel, message


HANDLED = Connection(REDIS_URL, transport=TRANSPORT).connection_errors


def test_acking_on_a_torn_down_connection_is_a_connection_error(probe_queue: Queue) -> None:
    """Stock kombu raises ``AttributeError`` here, which Celery treats as unrecoverable."""
    channel, message = _unacked_after_a_torn_down_connection(TRANSPORT, probe_queue)
    with pytest.raises(redis.ConnectionError, match="broker connection was closed") as raised:
        message.ack()
    assert isinstance(raised.value, HANDLED), "Celery logs it and carries on"
    with contextlib.suppress(*HANDLED):
        channel.close()


def test_restoring_unacked_messages_on_close_is_a_connection_error(probe_queue: Queue) -> None:
    """Celery's second close of the lost connection; kombu ignores connection errors there."""
    channel, _ = _unacked_after_a_torn_down_connection(TRANSPORT, probe_queue)
    with pytest.raises(HANDLED):
        channel.close()


def test_celery_uses_it_for_redis_brokers_only() -> None:
    on_redis = create_app(Settings(broker_url="redis://127.0.0.1:6379/0"))
    assert on_redis.conf.broker_transport == TRANSPORT
    with on_redis.connection_for_write() as conn:
        assert conn.transport.Channel.__module__ == "worker.broker"
    embedded = create_app(Settings(broker_url="sqla+sqlite:////tmp/never-created.db"))
    assert embedded.conf.broker_transport is None
