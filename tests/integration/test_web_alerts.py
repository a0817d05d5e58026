"""The alert inbox page: ordering, acknowledge and resolve with CSRF and audit."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
from sqlalchemy import select

from campaigns.enums import AlertKind, AlertPriority, AlertStatus
from campaigns.models import Alert, AuditEntry, utcnow
from campaigns.runtime import Runtime
from tests.factories import make_patient
from tests.web_support import csrf_from, login, make_user, web_server


def _alert(rt: Runtime, pid: int, kind: AlertKind, hours_ago: int, status: AlertStatus) -> int:
    with rt.session() as session:
        alert = Alert(
            patient_id=pid,
            kind=kind,
            priority=AlertPriority.HIGH if kind == AlertKind.CRISIS else AlertPriority.NORMAL,
            status=status,
            summary=f"{kind.value} {hours_ago}h",
            created_at=utcnow() - timedelta(hours=hours_ago),
        )
        session.add(alert)
        session.flush()
        return alert.id


def _order(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr id="alert-(\d+)"', html)]


def test_inbox_orders_open_crises_first_and_updates_are_audited(rt: Runtime) -> None:
    pid = make_patient(rt, now=utcnow(), first_name="Kit")
    done = _alert(rt, pid, AlertKind.CRISIS, 0, AlertStatus.RESOLVED)
    flare_new = _alert(rt, pid, AlertKind.LONG_FLARE, 1, AlertStatus.OPEN)
    flare_old = _alert(rt, pid, AlertKind.LONG_FLARE, 30, AlertStatus.OPEN)
    crisis = _alert(rt, pid, AlertKind.CRISIS, 50, AlertStatus.OPEN)
    account = make_user(rt)
    with web_server(rt) as base, httpx.Client(base_url=base) as client:
        login(client, account.email)
        page = client.get("/alerts").text
        csrf = csrf_from(page)
        forged = client.post(f"/alerts/{crisis}/acknowledge")
        acked = client.post(f"/alerts/{crisis}/acknowledge", data={"csrf_token": csrf})
        resolved = client.post(f"/alerts/{flare_old}/resolve", data={"csrf_token": csrf})
        again = client.post(f"/alerts/{flare_old}/resolve", data={"csrf_token": csrf})
        unknown = client.post("/alerts/99999/resolve", data={"csrf_token": csrf})
        bad_action = client.post(f"/alerts/{crisis}/reopen", data={"csrf_token": csrf})
        after = client.get("/alerts").text
        open_only = client.get("/alerts", params={"status": "open"}).text
    assert _order(page) == [crisis, flare_new, flare_old, done]
    assert "Kit Rivera" in page and f'href="/patients/{pid}"' in page
    assert forged.status_code == 403
    assert acked.status_code == 303 and resolved.status_code == 303
    assert again.status_code == 409 and unknown.status_code == 404 and bad_action.status_code == 404
    assert _order(after) == [flare_new, crisis, done, flare_old]  # crises first in each status
    assert _order(open_only) == [flare_new]
    with rt.session() as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.entity == "alert").order_by(AuditEntry.id)
        ).all()
    assert [(e.action, e.entity_id, e.after) for e in entries] == [
        ("acknowledge", str(crisis), {"status": "acknowledged"}),
        ("resolve", str(flare_old), {"status": "resolved"}),
    ]


def test_inbox_needs_a_login(rt: Runtime) -> None:
    with web_server(rt) as base:
        response = httpx.get(f"{base}/alerts")
    assert response.status_code == 303 and response.headers["location"] == "/login?next=/alerts"
