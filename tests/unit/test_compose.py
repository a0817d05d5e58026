"""docker-compose.yml describes the production topology (Docker itself is not on CI)."""

from __future__ import annotations

import re
from typing import Any

import yaml

from config.beat import QUEUES
from tests.conftest import REPO
from worker.app import create_app

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]


def test_every_process_of_the_topology_is_there() -> None:
    assert {"postgres", "redis", "migrate", "web", "worker", "beat", "mailcatcher"} <= set(SERVICES)


def test_app_processes_wait_for_healthy_services_and_one_migration() -> None:
    for name in ("web", "worker", "beat"):
        depends = SERVICES[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
    for name in ("postgres", "redis", "web"):
        assert "healthcheck" in SERVICES[name]


def test_no_secret_is_written_in_the_file() -> None:
    text = (REPO / "docker-compose.yml").read_text()
    for key in (
        "POSTGRES_PASSWORD",
        "CAMPAIGNS_SECRET_KEY",
        "CAMPAIGNS_DATA_KEYS",
        "CAMPAIGNS_LOOKUP_KEY",
    ):
        assert re.search(rf"\$\{{{key}:\?", text), f"{key} must come from the environment"
    assert "TWILIO_AUTH_TOKEN" not in text or "${" in text


def test_workers_scale_and_use_the_queues_the_app_routes_to() -> None:
    worker = SERVICES["worker"]
    assert worker["deploy"]["replicas"] >= 2
    assert QUEUES in worker["command"]
    routed = {route["queue"] for route in create_app().conf.task_routes.values()}
    assert routed | {"default"} == set(QUEUES.split(",")), "every routed queue is consumed"


def test_long_running_processes_come_back_after_a_crash_or_reboot() -> None:
    for name in ("postgres", "redis", "web", "worker", "beat"):
        assert SERVICES[name].get("restart") == "unless-stopped", name
    assert SERVICES["migrate"]["restart"] == "no", "migrations run once"
