"""``claims.claim_due`` builds its rows by position: the selected columns and the
dataclasses' fields must stay in the same order."""

from __future__ import annotations

from dataclasses import fields

from campaigns import claims
from campaigns.claims import DueEnrollment, DuePatient


def test_a_due_enrollment_takes_the_selected_columns_in_order() -> None:
    names = [f.name for f in fields(DueEnrollment)]
    assert names == [*claims._NAMES, "patient", "version"]
    assert [f.name for f in fields(DuePatient)] == claims._PATIENT_COLUMNS
    assert claims._NAMES[claims._VERSION_AT] == "version_id"
