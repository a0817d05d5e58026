"""The ``campaigns`` command line, end to end on a temporary database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from campaigns.cli import app
from campaigns.db import engine_for
from config.settings import get_settings

runner = CliRunner()


@pytest.fixture
def cli_env(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("CAMPAIGNS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CAMPAIGNS_DATABASE_URL", db_url)
    get_settings.cache_clear()
    yield tmp_path / "data"
    get_settings.cache_clear()
    engine_for(db_url).dispose()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def enroll_args(**overrides: str) -> list[str]:
    values = {
        "--first-name": "Ana",
        "--phone": "+1 650 253 0000",
        "--timezone": "America/Chicago",
        "--channel": "sms",
        "--send-time": "09:30",
        **overrides,
    }
    return ["enroll", "--consent", *[x for kv in values.items() for x in kv]]


def test_init_enroll_tick_reply_status(cli_env: Path) -> None:
    code, out = invoke("init")
    assert code == 0, out
    assert "retrain-the-alarm" in out
    code, out = invoke("init")
    assert "already at version 1" in out
    code, out = invoke(*enroll_args(), "--now", "2026-03-02T12:00:00")
    assert code == 0, out
    code, out = invoke("tick", "--now", "2026-03-02T15:31:00")
    assert code == 0, out
    assert "'planned': 1" in out and "'sent': 1" in out
    sms = list((cli_env / "outbox" / "sms").glob("*.json"))
    assert len(sms) == 1
    code, out = invoke("reply", "1", "9/10 awful flare", "--now", "2026-03-02T20:00:00")
    assert code == 0, out
    assert "score=9.0" in out
    code, out = invoke("status")
    assert "flare" in out and "1/42" in out


def test_bad_phone_is_refused_naming_the_field_and_nothing_is_stored(cli_env: Path) -> None:
    invoke("init")
    code, out = invoke(*enroll_args(**{"--phone": "555-12"}))
    assert code == 1
    assert "phone" in out and "not" in out
    code, out = invoke("status")
    assert "Ana" not in out


def test_enroll_without_consent_is_refused(cli_env: Path) -> None:
    invoke("init")
    args = [a for a in enroll_args() if a != "--consent"]
    code, out = invoke(*args)
    assert code == 1
    assert "--consent is required" in out


def test_unknown_timezone_names_the_field(cli_env: Path) -> None:
    invoke("init")
    code, out = invoke(*enroll_args(**{"--timezone": "Chicago"}))
    assert code == 1
    assert "timezone" in out and "IANA" in out


def test_invalid_setting_fails_at_start_naming_the_variable(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAMPAIGNS_SEND_WINDOW_START", "06:00")
    get_settings.cache_clear()
    code, out = invoke("init")
    assert code == 2
    assert "CAMPAIGNS_SEND_WINDOW_START" in out


def test_loading_a_broken_program_names_file_and_line(cli_env: Path, tmp_path: Path) -> None:
    import shutil

    from tests.factories import MINI

    folder = Path(shutil.copytree(MINI, tmp_path / "mini"))
    (folder / "steps" / "d2-write" / "sms.txt.j2").write_text("ok\n{{ oops }}\n")
    invoke("init")
    code, out = invoke("programs", "load", str(folder))
    assert code == 1
    assert "steps/d2-write/sms.txt.j2:2" in out.replace("\n", "")


def test_status_shows_messages_staff_must_check(cli_env: Path, db_url: str) -> None:
    from sqlalchemy import update

    from campaigns.db import engine_for
    from campaigns.enums import MessageStatus
    from campaigns.models import OutboxMessage

    invoke("init")
    invoke(*enroll_args(), "--now", "2026-03-02T12:00:00")
    invoke("tick", "--now", "2026-03-02T15:31:00")
    with engine_for(db_url).begin() as conn:
        conn.execute(update(OutboxMessage).values(status=MessageStatus.UNKNOWN))
    code, out = invoke("status")
    assert code == 0
    assert "1 unknown" in out


def test_enroll_csv_takes_the_bulk_path_and_names_bad_rows(cli_env: Path, tmp_path: Path) -> None:
    invoke("init")
    csv_file = tmp_path / "patients.csv"
    csv_file.write_text(
        "first_name,phone,email,timezone,channel,consent_sms,send_time\n"
        "Ana,+1 650 253 0000,,America/Chicago,sms,yes,09:30\n"
        "Ben,not a phone,,America/Chicago,sms,yes,09:30\n"
        "Cy,(650) 253-0000,,America/Chicago,sms,yes,09:30\n"
        "Di,+1 650 253 0002,,Mars/Olympus,sms,yes,09:30\n"
        "Ed,+1 650 253 0003,ed@example.org,America/Denver,email,no,10:00\n"
        "Flo,+1 650 253 0004,,America/Denver,sms,true,11:00\n"
    )
    code, out = invoke("enroll-csv", str(csv_file), "--now", "2026-03-02T12:00:00")
    assert code == 1, out
    assert "enrolled 2 patient(s); 4 row(s) rejected" in out
    assert "line 3: phone" in out
    assert "line 4: phone repeats an earlier row" in out
    assert "line 5: timezone" in out
    assert "line 6:" in out and "consent" in out
    code, out = invoke("status")
    assert code == 0 and "Ana" in out and "Flo" in out and "Ben" not in out
