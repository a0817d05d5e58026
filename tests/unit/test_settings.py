"""Bad configuration fails at start-up with a message naming the variable."""

from __future__ import annotations

import pytest

from config.settings import Settings, SettingsError, load_settings


def test_unknown_timezone_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPAIGNS_DEFAULT_TIMEZONE", "Mars/Olympus")
    with pytest.raises(SettingsError, match=r"CAMPAIGNS_DEFAULT_TIMEZONE: .*Mars/Olympus"):
        load_settings()


def test_send_window_cannot_reach_into_the_night(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPAIGNS_SEND_WINDOW_END", "22:00")
    with pytest.raises(SettingsError, match="CAMPAIGNS_SEND_WINDOW_END must be <= 21:00"):
        load_settings()


def test_garbage_number_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPAIGNS_TICK_BATCH_SIZE", "lots")
    with pytest.raises(SettingsError, match="CAMPAIGNS_TICK_BATCH_SIZE"):
        load_settings()


def test_production_refuses_a_placeholder_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPAIGNS_ENVIRONMENT", "production")
    monkeypatch.setenv("CAMPAIGNS_SECRET_KEY", "changeme")
    with pytest.raises(SettingsError, match="CAMPAIGNS_SECRET_KEY"):
        load_settings()


def test_defaults_need_no_server(tmp_path: object) -> None:
    settings = Settings()
    assert settings.resolved_database_url.startswith("sqlite:///")
    assert settings.resolved_broker_url.startswith("sqla+sqlite:///")
