"""The app answers health checks over real HTTP."""

from __future__ import annotations

import httpx

from campaigns.runtime import Runtime
from campaigns.web.app import create_app
from tests.servers import serve


def test_liveness_and_readiness_over_http(rt: Runtime) -> None:
    with serve(create_app(rt)) as base:
        assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
        ready = httpx.get(f"{base}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}


def test_metrics_count_messages_replies_flares_and_the_last_tick(rt: Runtime) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from campaigns.enums import MessageStatus
    from campaigns.heartbeats import TICK, beat
    from campaigns.inbound import receive_reply
    from campaigns.models import OutboxMessage, Patient, utcnow
    from campaigns.outbox import deliver
    from campaigns.scheduler import tick
    from tests.factories import load_program, make_enrollment

    monday = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
    due = monday + timedelta(hours=10)
    version = load_program(rt)
    patient_id, _ = make_enrollment(rt, version, now=monday)
    make_enrollment(rt, version, now=monday)
    tick(rt, now=due, dispatch=lambda ids: [deliver(rt, ids[0], now=due)])
    with rt.session() as session:
        patient = session.get_one(Patient, patient_id)
        receive_reply(
            rt, session, patient, "9, awful flare", channel=patient.preferred_channel, now=due
        )
        beat(session, TICK, now=due, seconds=0.25)
        # the undelivered one, as if a send task were holding it right now
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.status == MessageStatus.PLANNED)
            .values(lease_until=utcnow() + timedelta(minutes=5))
        )
    with serve(create_app(rt)) as base:
        body = httpx.get(f"{base}/metrics").text
    assert 'campaigns_messages_planned_total{channel="sms"} 2.0' in body
    assert 'campaigns_messages_sent_total{channel="sms"} 1.0' in body
    assert 'campaigns_replies_total{channel="sms"} 1.0' in body
    assert "campaigns_flares_total 1.0" in body
    assert "campaigns_queue_depth 1.0" in body
    assert 'campaigns_handed_out{channel="sms"} 1.0' in body
    assert 'campaigns_handed_out{channel="email"} 0.0' in body
    assert "campaigns_tick_duration_seconds 0.25" in body


def test_metrics_can_require_a_token(rt: Runtime) -> None:
    from pydantic import SecretStr

    rt.settings = rt.settings.model_copy(update={"metrics_token": SecretStr("scrape-secret")})
    with serve(create_app(rt)) as base:
        assert httpx.get(f"{base}/metrics").status_code == 401
        ok = httpx.get(f"{base}/metrics", headers={"Authorization": "Bearer scrape-secret"})
    assert ok.status_code == 200
