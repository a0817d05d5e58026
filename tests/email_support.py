"""What the email tests share: a clinic with email configured, its app served, sending."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

import pytest

from campaigns.outbox import deliver
from campaigns.runtime import Runtime
from campaigns.scheduler import tick
from campaigns.web.app import create_app
from tests.fakes.smtp_server import configure_email
from tests.servers import serve


@pytest.fixture
def clinic(rt: Runtime) -> Runtime:
    configure_email(rt)
    return rt


@pytest.fixture
def base(clinic: Runtime) -> Iterator[str]:
    with serve(create_app(clinic)) as url:
        yield url


def send_due(rt: Runtime, now: datetime) -> list[int]:
    """One tick at ``now``, each planned message delivered at once; the planned ids."""

    def dispatch(ids: Sequence[int]) -> None:
        for outbox_id in ids:
            deliver(rt, outbox_id, now=now)

    return tick(rt, now=now, dispatch=dispatch).planned
