"""Fuzz every operation in the app's OpenAPI schema: no input may make the server fail (5xx).

Schemathesis reads /openapi.json from the app itself, so endpoints added later are fuzzed
without touching this file. Calls go in-process (ASGI), authenticated as an admin with a
bearer token, on SQLite. Each operation gets a small, bounded number of valid ("positive")
and invalid ("negative") examples, derandomized so a run is reproducible; integer path
parameters are also tried just past 64 bits, which random generation may or may not reach.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from campaigns.db import migrate
from campaigns.enums import Role
from campaigns.models import utcnow
from campaigns.runtime import Runtime
from campaigns.web.app import create_app
from config.settings import Settings
from tests.conftest import REPO, make_settings
from tests.factories import load_program, make_enrollment
from tests.web_support import api_token, make_user

MAX_EXAMPLES = 20
BOUNDARY_EXAMPLES = 3
TOO_BIG_ID = 2**63  # one past the largest BIGINT / SQLite INTEGER
INBOUND_EMAIL_SECRET = "inbound-email-secret-for-fuzzing"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: the point is the handlers' input handling, kept well under a minute."""
    url = f"sqlite:///{tmp_path / 'campaigns.db'}"
    migrate(url)
    return url


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    """The test settings, plus an inbound-email secret so that webhook is fuzzed for real
    (without one it refuses everything with a deliberate 503)."""
    return make_settings(tmp_path, db_url, inbound_email_secret=INBOUND_EMAIL_SECRET)


@pytest.fixture
def app_under_test(rt: Runtime) -> Any:
    version = load_program(rt, REPO / "templates" / "programs" / "retrain-the-alarm")
    make_enrollment(rt, version, now=utcnow())  # something for ids in paths to hit
    return create_app(rt)


@pytest.fixture
def auth_headers(rt: Runtime) -> dict[str, str]:
    admin = make_user(rt, "admin@clinic.example", Role.ADMIN)
    return {"Authorization": f"Bearer {api_token(rt, admin)}"}


def _operations(app: Any) -> list[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    # .ok() raises for an entry schemathesis cannot use: a broken schema is a failure too.
    return [result.ok() for result in schema.get_all_operations()]


def _headers_for(operation: schemathesis.APIOperation, auth: dict[str, str]) -> dict[str, str]:
    if operation.path.startswith("/webhooks/email"):
        return {"Authorization": f"Bearer {INBOUND_EMAIL_SECRET}"}
    return auth


def _largest_ids(operation: schemathesis.APIOperation) -> dict[str, int]:
    """Each integer path parameter at its largest allowed value: the schema's maximum, or just
    past 64 bits when it declares none."""
    ids = {}
    for param in operation.path_parameters:
        schema = param.optimized_schema
        if schema.get("type") != "integer":
            continue
        if "maximum" in schema:
            ids[param.name] = int(schema["maximum"])
        elif "exclusiveMaximum" in schema:
            ids[param.name] = int(schema["exclusiveMaximum"]) - 1
        else:
            ids[param.name] = TOO_BIG_ID
    return ids


def _fuzz(
    operation: schemathesis.APIOperation,
    mode: GenerationMode,
    headers: dict[str, str],
    *,
    max_examples: int = MAX_EXAMPLES,
    path_parameters: dict[str, Any] | None = None,
) -> None:
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

    @given(case=strategy)
    @hypothesis_settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,  # the same examples every run: reproducible, not flaky
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: bounded time; curl to repro
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        # A copy: schemathesis adds its own headers to the dict it is given.
        case.call_and_validate(headers=dict(headers), checks=[not_a_server_error])

    run()


def _check_token_is_accepted(
    operations: list[schemathesis.APIOperation], headers: dict[str, str]
) -> None:
    """Fuzzing with a token the app rejects would only ever exercise the 401 path."""
    for op in operations:
        if op.path.startswith("/api/") and op.method.upper() == "GET" and "{" not in op.path:
            status = op.Case().call(headers=dict(headers)).status_code
            assert status not in (401, 403), f"GET {op.path} refused the admin's token: {status}"


def test_no_operation_answers_with_a_server_error(
    app_under_test: Any, auth_headers: dict[str, str]
) -> None:
    operations = _operations(app_under_test)
    assert any(op.path == "/healthz" for op in operations), "schema lists no operations"
    _check_token_is_accepted(operations, auth_headers)

    failures: list[str] = []
    for operation in operations:
        headers = _headers_for(operation, auth_headers)
        runs: list[tuple[str, GenerationMode, dict[str, Any]]] = [
            ("positive data", GenerationMode.POSITIVE, {}),
            ("negative data", GenerationMode.NEGATIVE, {}),
        ]
        largest = _largest_ids(operation)
        if largest:
            runs.append(
                (
                    f"largest ids {largest}",
                    GenerationMode.POSITIVE,
                    {"path_parameters": largest, "max_examples": BOUNDARY_EXAMPLES},
                )
            )
        for label, mode, options in runs:
            try:
                _fuzz(operation, mode, headers, **options)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Unsatisfiable:
                # Nothing in this operation can be made invalid (no parameters, or only
                # free-form strings): its negative pass has nothing to try.
                if mode is GenerationMode.NEGATIVE:
                    continue
                failures.append(f"{operation.label} ({label}): no valid input can be generated")
            except BaseException as exc:  # schemathesis' FailureGroup is a BaseExceptionGroup
                failures.append(f"{operation.label} ({label}):\n{type(exc).__name__}: {exc}")
    if failures:
        pytest.fail(f"{len(failures)} fuzzing run(s) failed:\n\n" + "\n\n".join(failures))
