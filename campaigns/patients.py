"""Patients and their per-channel consent: validated input, append-only consent history."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns import email_check, phone_check
from campaigns.enums import Channel
from campaigns.models import Consent, Patient


class PatientInput(BaseModel):
    """What staff type or a CSV row holds; every field error names the field."""

    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    first_name: str = Field(min_length=1, max_length=100)
    last_name: str = Field(default="", max_length=100)
    email: str | None = None
    phone: str | None = None
    timezone: str
    channel: Channel
    send_time: time = time(10, 0)
    consent_sms: bool = False
    consent_email: bool = False
    external_ref: str | None = Field(default=None, max_length=64)
    phone_region: str = Field(default="US", exclude=True)

    @field_validator("first_name", "last_name", "external_ref")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value and "\x00" in value:  # PostgreSQL text cannot hold it; nor is it a name
            raise ValueError("must not contain NUL characters")
        return value

    @field_validator("email")
    @classmethod
    def _valid_email(cls, value: str | None, info: ValidationInfo) -> str | None:
        if not value:
            return None
        if (known := CheckedContacts.given(info)) and (email := known.emails.get(value)):
            return email
        try:
            return email_check.normalized(value)
        except email_check.EmailNotValidError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("timezone")
    @classmethod
    def _iana_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a path
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. America/Chicago)") from None
        return value

    @model_validator(mode="after")
    def _phone_and_channel(self, info: ValidationInfo) -> PatientInput:
        if self.phone:
            known = CheckedContacts.given(info)
            checked = known.phones.get((self.phone, self.phone_region)) if known else None
            self.phone = checked or normalize_phone(self.phone, self.phone_region)
        if self.channel == Channel.SMS and not self.phone:
            raise ValueError("phone is required when the channel is sms")
        if self.channel == Channel.EMAIL and not self.email:
            raise ValueError("email is required when the channel is email")
        return self


@dataclass(frozen=True)
class CheckedContacts:
    """Phone numbers and addresses of many rows, checked column by column, for
    ``PatientInput.model_validate(row, context=...)`` to look up instead of checking again.

    Bulk enrolment checks a chunk's numbers in one loop and its addresses in another: checked
    row by row, the phone and email libraries take turns and evict each other's code and
    tables from the CPU's caches, which cost ~25% more per row (``bench/HISTORY.md``, "B1:
    contacts checked by column"). Only values that passed are kept: one that failed is
    checked again by its own row, which raises the same error as without this.
    """

    #: E.164 by (number as given, stripped; region it is read in).
    phones: Mapping[tuple[str, str], str]
    #: Normalised address by address as given, stripped.
    emails: Mapping[str, str]

    @classmethod
    def of(cls, rows: Sequence[Mapping[str, Any]]) -> CheckedContacts:
        default_region = PatientInput.model_fields["phone_region"].default
        phones: dict[tuple[str, str], str] = {}
        emails: dict[str, str] = {}
        numbers = {
            (phone.strip(), region.strip() if isinstance(region, str) else default_region)
            for row in rows
            if isinstance(phone := row.get("phone"), str) and phone.strip()
            and (region := row.get("phone_region") or default_region)
        }  # fmt: skip
        for number, region in numbers:  # try, not contextlib.suppress: ~0.4 µs less a value
            try:
                phones[number, region] = normalize_phone(number, region)
            except ValueError:
                continue
        addresses = {
            address.strip()
            for row in rows
            if isinstance(address := row.get("email"), str) and address.strip()
        }
        for address in addresses:
            try:
                emails[address] = email_check.normalized(address)
            except email_check.EmailNotValidError:
                continue
        return cls(phones, emails)

    @staticmethod
    def given(info: ValidationInfo) -> CheckedContacts | None:
        context = info.context
        return context if isinstance(context, CheckedContacts) else None


def field_of(loc: tuple[int | str, ...], message: str) -> str:
    """Model-level errors have no location; the message starts with the field it is about."""
    if loc:
        return str(loc[0])
    first = message.split(" ", 1)[0]
    return first if first in ("phone", "email") else "form"


def missing_consent(data: PatientInput) -> tuple[str, str] | None:
    """(field, reason) when the patient has not consented to their own channel: nothing is
    ever sent on a channel without recorded consent, whichever door enrolled them."""
    channel = data.channel
    if data.consent_sms if channel == Channel.SMS else data.consent_email:
        return None
    return (
        f"consent_{channel.value}",
        f"the patient must consent to {channel.value} messages before enrolment",
    )


#: E.164 or a ValueError saying why (``phone_check.normalized``): staff forms, CSV rows and
#: the chunk checks of ``CheckedContacts`` all read numbers this one way.
normalize_phone = phone_check.normalized


def create_patient(session: Session, data: PatientInput, *, by: str, now: datetime) -> Patient:
    patient = Patient(
        first_name=data.first_name,
        last_name=data.last_name,
        email=data.email,
        phone_e164=data.phone,
        timezone=data.timezone,
        preferred_channel=data.channel,
        send_time=data.send_time,
        external_ref=data.external_ref,
        created_at=now,
    )
    session.add(patient)
    for channel, granted in ((Channel.SMS, data.consent_sms), (Channel.EMAIL, data.consent_email)):
        if granted:
            patient.consents.append(
                Consent(channel=channel, granted=True, method="enrolment", recorded_by=by, at=now)
            )
    session.flush()
    return patient


def record_consent(
    session: Session,
    patient: Patient,
    channel: Channel,
    *,
    granted: bool,
    method: str,
    by: str,
    now: datetime,
) -> Consent:
    consent = Consent(
        patient_id=patient.id,
        channel=channel,
        granted=granted,
        method=method,
        recorded_by=by,
        at=now,
    )
    session.add(consent)
    session.flush()
    return consent


def has_consent(session: Session, patient_id: int, channel: Channel) -> bool:
    """The newest consent row for the channel decides; no row means no consent."""
    latest = session.scalar(
        select(Consent.granted)
        .where(Consent.patient_id == patient_id, Consent.channel == channel)
        .order_by(Consent.id.desc())
        .limit(1)
    )
    return bool(latest)


def find_by_phone(session: Session, phone_e164: str) -> Patient | None:
    return session.scalar(select(Patient).where(Patient.has_phone(phone_e164)).limit(1))
