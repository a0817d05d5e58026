"""JSON API shapes: what the staff API accepts and returns (its OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from campaigns.enums import AlertKind, AlertPriority, AlertStatus, Channel


class EnrolmentIn(BaseModel):
    """A new patient and the program (slug) to start; consent is for the chosen channel."""

    model_config = ConfigDict(extra="forbid")

    first_name: str = Field(max_length=100)
    last_name: str = Field(default="", max_length=100)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=32)
    timezone: str = Field(max_length=64)
    channel: Channel
    send_time: time = time(10, 0)
    consent_sms: bool = False
    consent_email: bool = False
    external_ref: str | None = Field(default=None, max_length=64)
    program: str = Field(max_length=64)


class ActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(default="", max_length=200)


class PacingOut(BaseModel):
    enrollment_id: int
    program: str
    version: int
    state: str
    step: int
    steps: int
    cadence_days: int
    next_due_at: datetime | None
    next_due_local: str | None


class PatientDetailOut(BaseModel):
    id: int
    first_name: str
    last_name: str
    email: str | None
    phone: str | None
    timezone: str
    channel: Channel
    send_time: time
    external_ref: str | None
    created_at: datetime
    pacing: PacingOut | None


class EnrolledOut(BaseModel):
    patient_id: int
    enrollment_id: int


class RowErrorOut(BaseModel):
    row: int
    field: str
    reason: str


class RowEnrolledOut(BaseModel):
    row: int
    patient_id: int
    enrollment_id: int


class ImportReportOut(BaseModel):
    total: int
    enrolled: list[RowEnrolledOut]
    rejected: list[RowErrorOut]


class AlertOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    patient_id: int
    enrollment_id: int | None
    kind: AlertKind
    priority: AlertPriority
    status: AlertStatus
    summary: str
    created_at: datetime


class ExportOut(BaseModel):
    """Every stored row about the patient, grouped by kind."""

    model_config = ConfigDict(extra="allow")

    exported_at: str
    patient: dict[str, Any]
    consents: list[dict[str, Any]]
    enrollments: list[dict[str, Any]]
    outbox: list[dict[str, Any]]
    replies: list[dict[str, Any]]
    pain_reports: list[dict[str, Any]]
    events: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
