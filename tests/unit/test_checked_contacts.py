"""Bulk enrolment's column-by-column contact checks give each row what checking it alone gives."""

from __future__ import annotations

from typing import Any

import pytest

from campaigns.bulk_rows import RowError, validate
from campaigns.patients import CheckedContacts, PatientInput

BASE = {"first_name": "Ana", "timezone": "America/Chicago", "consent_sms": "yes",
        "consent_email": "yes"}  # fmt: skip
ROWS: list[dict[str, Any]] = [
    {**BASE, "channel": "sms", "phone": "(650) 253-0001", "email": "Ana@Example.ORG"},
    {**BASE, "channel": "sms", "phone": "  +1 650 253 0002 ", "email": " ben@example.org  "},
    {**BASE, "channel": "sms", "phone": "020 7946 0018", "phone_region": "GB"},
    {**BASE, "channel": "sms", "phone": "020 7946 0018"},  # not a US number
    {**BASE, "channel": "sms", "phone": "not a phone"},
    {**BASE, "channel": "email", "email": "no-at-sign.example.org"},
    {**BASE, "channel": "email", "email": "", "phone": ""},
    {**BASE, "channel": "email", "email": "cy@example.org", "phone": "+16502530003"},
    {**BASE, "channel": "sms", "phone": "+16502530004", "phone_region": 1},  # not a region
]


def _outcome(result: PatientInput | RowError) -> Any:
    return result if isinstance(result, RowError) else result.model_dump()


@pytest.mark.parametrize("index", range(len(ROWS)))
def test_a_row_checked_with_its_chunk_comes_out_as_checked_alone(index: int) -> None:
    known = CheckedContacts.of(ROWS)
    alone = validate(index + 2, ROWS[index])
    assert _outcome(validate(index + 2, ROWS[index], known)) == _outcome(alone)


def test_only_values_that_passed_are_kept_and_each_under_its_region() -> None:
    known = CheckedContacts.of(ROWS)
    assert known.phones == {
        ("(650) 253-0001", "US"): "+16502530001",
        ("+1 650 253 0002", "US"): "+16502530002",
        ("020 7946 0018", "GB"): "+442079460018",
        ("+16502530003", "US"): "+16502530003",
        ("+16502530004", "US"): "+16502530004",
    }
    assert known.emails == {
        "Ana@Example.ORG": "Ana@example.org",
        "ben@example.org": "ben@example.org",
        "cy@example.org": "cy@example.org",
    }


def test_validation_takes_the_checked_values_instead_of_checking_again() -> None:
    """What keeps the faster path from going quietly unused: the values given are the ones
    stored (these two are deliberately not what a check would give)."""
    row = {**BASE, "channel": "sms", "phone": "(650) 253-0001", "email": "ana@example.org"}
    known = CheckedContacts(
        phones={("(650) 253-0001", "US"): "+16502539999"},
        emails={"ana@example.org": "other@example.org"},
    )
    checked = validate(2, row, known)
    assert isinstance(checked, PatientInput)
    assert (checked.phone, checked.email) == ("+16502539999", "other@example.org")
