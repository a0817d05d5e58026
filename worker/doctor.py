"""``campaigns doctor``: what is wrong with this deployment, in plain words.

Each check is independent and says what to do next; one broken part does not hide the
state of the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from campaigns import field_crypto
from campaigns.channels.base import DeliveryError
from campaigns.clock import now as clock_now
from campaigns.db import alembic_config, autovacuum_on
from campaigns.enums import Channel
from campaigns.heartbeats import TICK, last_beat
from campaigns.key_rotation import check_newest
from campaigns.runtime import Runtime
from config.beat import QUEUES
from worker.app import create_app

#: Three missed ticks mean beat is not running.
MISSED_TICKS = 3


class Verdict(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    name: str
    verdict: Verdict
    detail: str


def check_database(rt: Runtime) -> Check:
    try:
        with rt.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        return Check(
            "database",
            Verdict.FAIL,
            f"cannot connect ({type(exc).__name__}); "
            "check CAMPAIGNS_DATABASE_URL and that the server is up",
        )
    return Check("database", Verdict.OK, f"connected ({rt.engine.dialect.name})")


def check_migrations(rt: Runtime) -> Check:
    url = rt.settings.resolved_database_url
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    try:
        with rt.engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    except Exception as exc:
        return Check("migrations", Verdict.FAIL, f"cannot read ({type(exc).__name__})")
    if current != head:
        return Check(
            "migrations",
            Verdict.FAIL,
            f"database at {current or 'nothing'}, code expects {head}: run `campaigns init`",
        )
    return Check("migrations", Verdict.OK, f"at {head}")


def check_broker(rt: Runtime) -> Check:
    url = rt.settings.resolved_broker_url
    app = create_app(rt.settings)
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
    except Exception as exc:
        return Check(
            "broker",
            Verdict.FAIL,
            f"cannot reach the broker ({type(exc).__name__}); check CAMPAIGNS_BROKER_URL",
        )
    finally:
        app.close()
    kind = url.split("://", 1)[0]
    return Check("broker", Verdict.OK, f"reachable ({kind})")


def check_workers(rt: Runtime) -> Check:
    app = create_app(rt.settings)
    try:
        replies = app.control.ping(timeout=2.0) or []
    except Exception as exc:
        return Check("workers", Verdict.FAIL, f"cannot ask workers ({type(exc).__name__})")
    finally:
        app.close()
    if not replies:
        return Check(
            "workers",
            Verdict.FAIL,
            f"no worker answered: start one with `celery -A worker.app worker -Q {QUEUES}`",
        )
    return Check("workers", Verdict.OK, f"{len(replies)} worker(s) answered")


def check_beat(rt: Runtime) -> Check:
    try:
        with rt.session() as session:
            tick = last_beat(session, TICK)
    except Exception as exc:
        return Check("beat", Verdict.FAIL, f"cannot read the last tick ({type(exc).__name__})")
    if tick is None:
        return Check(
            "beat", Verdict.FAIL, "no tick has ever run: start `celery -A worker.app beat`"
        )
    age = clock_now(rt.settings.clock_file) - tick.at
    if age > timedelta(seconds=MISSED_TICKS * rt.settings.tick_seconds):
        minutes = int(age.total_seconds() // 60)
        return Check("beat", Verdict.FAIL, f"last tick {minutes} min ago: is beat running?")
    return Check("beat", Verdict.OK, f"last tick {int(age.total_seconds())} s ago")


def _transport_check(name: str, probe: Callable[[], object]) -> Check:
    try:
        result = probe()
    except DeliveryError as exc:
        return Check(name, Verdict.FAIL, exc.reason)
    return Check(name, Verdict.OK, "credentials accepted" + (f" ({result})" if result else ""))


def check_channels(rt: Runtime) -> list[Check]:
    """Real providers are probed without sending anything; file transports are only noted."""
    from campaigns.channels.smtp_email import SmtpEmailTransport
    from campaigns.channels.twilio_sms import TwilioSmsTransport

    email, sms = rt.transports.get(Channel.EMAIL), rt.transports.get(Channel.SMS)
    checks = [
        _transport_check("smtp", email.check_connection)
        if isinstance(email, SmtpEmailTransport)
        else Check("smtp", Verdict.WARN, "email is written to files (CAMPAIGNS_EMAIL_TRANSPORT)"),
        _transport_check("twilio", sms.check_credentials)
        if isinstance(sms, TwilioSmsTransport)
        else Check("twilio", Verdict.WARN, "SMS is written to files (CAMPAIGNS_SMS_TRANSPORT)"),
    ]
    return checks


def check_patient_keys(rt: Runtime) -> Check:
    keys = field_crypto.active()
    try:
        with rt.session() as session:
            problem = check_newest(session, keys)
    except Exception as exc:
        return Check("patient keys", Verdict.FAIL, f"cannot read patients ({type(exc).__name__})")
    if problem:
        return Check("patient keys", Verdict.FAIL, problem)
    if rt.settings.data_keys is None or rt.settings.lookup_key is None:
        return Check(
            "patient keys",
            Verdict.WARN,
            f"using a generated development key in {rt.settings.data_dir}; set "
            "CAMPAIGNS_DATA_KEYS and CAMPAIGNS_LOOKUP_KEY (`campaigns keys new`)",
        )
    rotating = [
        f"{count} {name} keys"
        for name, count in (("data", keys.data_key_count), ("lookup", len(keys.lookups)))
        if count > 1
    ]
    if rotating:
        return Check(
            "patient keys",
            Verdict.WARN,
            f"{' and '.join(rotating)} configured: after `campaigns keys reencrypt`, "
            "drop all but the first",
        )
    return Check("patient keys", Verdict.OK, "contacts decrypt and lookup hashes match")


#: Tables the hot paths reach through plans chosen from statistics (claims, reply look-ups).
HOT_TABLES = ("enrollments", "outbox", "inbound_replies", "pain_reports", "patients", "consents")
#: Rows changed since a table's last ANALYZE, as a share of the rows it had then (and at
#: least ``STALE_ROWS``), past which its statistics no longer describe it.
STALE_SHARE = 0.5
STALE_ROWS = 1000
_STATISTICS = text(
    "SELECT s.relname, s.n_mod_since_analyze, c.reltuples,"
    " EXISTS (SELECT 1 FROM pg_options_to_table(c.reloptions) o"
    "  WHERE o.option_name = 'autovacuum_enabled' AND NOT o.option_value::boolean)"
    " FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid"
    " WHERE s.relname = ANY(:names) ORDER BY s.relname"
)


def check_statistics(rt: Runtime) -> Check:
    """PostgreSQL plans from statistics that autovacuum keeps current. Without it a table's
    statistics stay as they were when it was small, and long-lived connections keep the
    plans they cached then: in the B7 soak the reply path ran 12x slower after four
    simulated weeks, until an ANALYZE."""
    if rt.engine.dialect.name != "postgresql":
        return Check("statistics", Verdict.OK, f"{rt.engine.dialect.name}: no server statistics")
    try:
        with rt.engine.connect() as conn:
            autovacuum = autovacuum_on(conn)
            tables = conn.execute(_STATISTICS, {"names": list(HOT_TABLES)}).all()
    except Exception as exc:
        return Check("statistics", Verdict.FAIL, f"cannot read ({type(exc).__name__})")
    stale = [
        f"{name} ({changed:,} rows changed)"
        for name, changed, rows, _ in tables
        if changed > max(STALE_ROWS, STALE_SHARE * max(rows, 0))
    ]
    off = [name for name, _, _, disabled in tables if disabled]
    problems = []
    if not autovacuum:
        problems.append("autovacuum is off on the server")
    if off:
        problems.append(f"autovacuum is off for {', '.join(off)}")
    if stale:
        problems.append(f"statistics are stale for {', '.join(stale)}")
    if problems:
        advice = (
            "turn autovacuum on, or run ANALYZE regularly"
            " (plans cached by open connections are replaced only then)"
        )
        return Check("statistics", Verdict.WARN, f"{'; '.join(problems)}: {advice}")
    return Check("statistics", Verdict.OK, "autovacuum on, statistics current")


def run_checks(rt: Runtime) -> list[Check]:
    return [
        check_database(rt),
        check_migrations(rt),
        check_statistics(rt),
        check_patient_keys(rt),
        check_broker(rt),
        check_workers(rt),
        check_beat(rt),
        *check_channels(rt),
    ]
