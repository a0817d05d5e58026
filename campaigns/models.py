"""Tables. Timestamps are stored as UTC and always come back timezone-aware."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    Date,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Time,
    UniqueConstraint,
    bindparam,
    event,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    validates,
)
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.types import TypeDecorator

from campaigns.enums import (
    REACHED,
    AlertKind,
    AlertPriority,
    AlertStatus,
    Channel,
    EnrollmentState,
    MessagePurpose,
    MessageStatus,
    Role,
    StepKind,
    Track,
)
from campaigns.field_crypto import EncryptedText, all_hashes, email_hash, phone_hash


class UTCDateTime(TypeDecorator[datetime]):
    """SQLite drops tz info; normalising here keeps comparisons in Python honest."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where UTC is required")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _enum(cls: type[Any], name: str) -> Enum:
    return Enum(
        cls,
        name=name,
        native_enum=False,
        validate_strings=True,
        length=16,
        values_callable=lambda members: [m.value for m in members],
    )


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


class Patient(Base):
    __tablename__ = "patients"

    id: Mapped[int] = mapped_column(primary_key=True)
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100), default="")
    #: Encrypted at rest; find patients by the ``*_hash`` columns (``Patient.has_phone``).
    email: Mapped[str | None] = mapped_column("email_ciphertext", EncryptedText())
    phone_e164: Mapped[str | None] = mapped_column("phone_ciphertext", EncryptedText())
    email_hash: Mapped[str | None] = mapped_column(String(64))
    phone_hash: Mapped[str | None] = mapped_column(String(64))
    #: Staff find a patient by the last four digits, as on a phone call.
    phone_last4: Mapped[str | None] = mapped_column(String(4))
    timezone: Mapped[str] = mapped_column(String(64))
    preferred_channel: Mapped[Channel] = mapped_column(_enum(Channel, "channel"))
    send_time: Mapped[time] = mapped_column(Time())
    external_ref: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    consents: Mapped[list[Consent]] = relationship(
        back_populates="patient", order_by="Consent.id", cascade="all, delete-orphan"
    )
    enrollments: Mapped[list[Enrollment]] = relationship(back_populates="patient")

    __table_args__ = (
        Index("ix_patients_phone_hash", "phone_hash"),
        Index("ix_patients_email_hash", "email_hash"),
        Index("ix_patients_phone_last4", "phone_last4"),
    )

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    @validates("phone_e164")
    def _index_phone(self, _key: str, value: str | None) -> str | None:
        self.phone_hash = phone_hash(value)
        self.phone_last4 = value[-4:] if value else None
        return value

    @validates("email")
    def _index_email(self, _key: str, value: str | None) -> str | None:
        self.email_hash = email_hash(value)
        return value

    @staticmethod
    def lookup_columns(phone: str | None, email: str | None) -> dict[str, str | None]:
        """The derived columns, for bulk inserts that bypass the ORM's validators."""
        return {
            name: values[0] for name, values in Patient.lookup_columns_of([phone], [email]).items()
        }

    @staticmethod
    def lookup_columns_of(
        phones: Sequence[str | None], emails: Sequence[str | None]
    ) -> dict[str, list[str | None]]:
        """``lookup_columns`` of many rows, column by column (bulk enrolment's workers)."""
        return {
            "phone_hash": [phone_hash(phone) for phone in phones],
            "phone_last4": [phone[-4:] if phone else None for phone in phones],
            "email_hash": [email_hash(email) for email in emails],
        }

    @classmethod
    def has_phone(cls, phone: str) -> ColumnElement[bool]:
        return cls.phone_hash.in_(all_hashes("phone", phone))

    @classmethod
    def has_email(cls, email: str) -> ColumnElement[bool]:
        return cls.email_hash.in_(all_hashes("email", email))


class Consent(Base):
    """Append-only: the newest row per channel is the patient's current consent."""

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    channel: Mapped[Channel] = mapped_column(_enum(Channel, "channel"))
    granted: Mapped[bool] = mapped_column(Boolean)
    method: Mapped[str] = mapped_column(String(64))
    recorded_by: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(default=utcnow)

    patient: Mapped[Patient] = relationship(back_populates="consents")

    __table_args__ = (Index("ix_consents_patient_channel", "patient_id", "channel", "id"),)


class Program(Base):
    __tablename__ = "programs"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    versions: Mapped[list[ProgramVersion]] = relationship(
        back_populates="program", order_by="ProgramVersion.version"
    )


class ProgramVersion(Base):
    """Immutable once published: enrolled patients keep the exact text they started with."""

    __tablename__ = "program_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    version: Mapped[int] = mapped_column(Integer)
    checksum: Mapped[str] = mapped_column(String(64))
    cadence_days: Mapped[int] = mapped_column(Integer, default=1)
    sms_max_segments: Mapped[int] = mapped_column(Integer, default=2)
    pacing_rules: Mapped[dict[str, Any]] = mapped_column(JSON)
    files: Mapped[dict[str, Any]] = mapped_column(JSON)
    published_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_by: Mapped[str] = mapped_column(String(100), default="system")

    program: Mapped[Program] = relationship(back_populates="versions")
    steps: Mapped[list[ProgramStep]] = relationship(
        back_populates="version", order_by="(ProgramStep.track, ProgramStep.position)"
    )

    __table_args__ = (UniqueConstraint("program_id", "version"),)


class ProgramStep(Base):
    __tablename__ = "program_steps"

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("program_versions.id"))
    key: Mapped[str] = mapped_column(String(64))
    track: Mapped[Track] = mapped_column(_enum(Track, "track"))
    position: Mapped[int] = mapped_column(Integer)
    day: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[StepKind] = mapped_column(_enum(StepKind, "step_kind"))
    title: Mapped[str] = mapped_column(String(200))

    version: Mapped[ProgramVersion] = relationship(back_populates="steps")

    __table_args__ = (
        UniqueConstraint("version_id", "track", "position"),
        UniqueConstraint("version_id", "key"),
    )


class Enrollment(Base):
    """Pacing state lives here; ``next_due_at`` is NULL whenever nothing can be due."""

    __tablename__ = "enrollments"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    version_id: Mapped[int] = mapped_column(ForeignKey("program_versions.id"))
    state: Mapped[EnrollmentState] = mapped_column(_enum(EnrollmentState, "enrollment_state"))
    main_position: Mapped[int] = mapped_column(Integer, default=0)
    flare_position: Mapped[int] = mapped_column(Integer, default=0)
    flare_sent: Mapped[int] = mapped_column(Integer, default=0)
    cadence_days: Mapped[int] = mapped_column(Integer, default=1)
    next_due_at: Mapped[datetime | None] = mapped_column()
    last_program_send_on: Mapped[date | None] = mapped_column(Date)
    flare_started_at: Mapped[datetime | None] = mapped_column()
    last_flare_signal_at: Mapped[datetime | None] = mapped_column()
    settled_reports: Mapped[int] = mapped_column(Integer, default=0)
    flare_alerted: Mapped[bool] = mapped_column(Boolean, default=False)
    resume_pending: Mapped[bool] = mapped_column(Boolean, default=False)
    paused_from: Mapped[EnrollmentState | None] = mapped_column(
        _enum(EnrollmentState, "enrollment_state")
    )
    enrolled_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column()
    row_version: Mapped[int] = mapped_column(Integer, default=1)

    patient: Mapped[Patient] = relationship(back_populates="enrollments")
    version: Mapped[ProgramVersion] = relationship()

    __mapper_args__ = {"version_id_col": row_version}  # noqa: RUF012 - SQLAlchemy reads it
    __table_args__ = (
        # In the tick's claim order (next_due_at, id), so PostgreSQL reads a batch off the
        # index instead of sorting every due row (migration 0007).
        Index(
            "ix_enrollments_due",
            "next_due_at",
            "id",
            sqlite_where=text("next_due_at IS NOT NULL"),
            postgresql_where=text("next_due_at IS NOT NULL"),
        ),
        Index("ix_enrollments_patient", "patient_id"),
        Index("ix_enrollments_state", "state"),
    )


def _status_predicate(statuses: Sequence[MessageStatus]) -> TextClause:
    if len(statuses) == 1:
        return text(f"status = '{statuses[0].value}'")
    return text(f"status IN ({', '.join(repr(s.value) for s in statuses)})")


def _outbox_index(name: str, *columns: str, statuses: Sequence[MessageStatus]) -> Index:
    """An outbox index holding only the rows with one of ``statuses``."""
    where = _status_predicate(statuses)
    return Index(name, *columns, postgresql_where=where, sqlite_where=where)


#: The statuses each of the outbox's other partial indexes holds. Nearly every row ends
#: ``sent`` or ``delivered`` (one per patient-day, kept for years), and nothing looks those up
#: by status: the scheduler wants the ``planned`` ones, the stale-send sweep the ``sending``
#: ones, staff the ``failed`` and ``unknown`` ones. So a row leaves these indexes once it is
#: sent, and their upkeep is paid only while it waits (migration 0009).
OUTBOX_PLANNED = (MessageStatus.PLANNED,)
OUTBOX_SENDING = (MessageStatus.SENDING,)
OUTBOX_UNSETTLED = (MessageStatus.FAILED, MessageStatus.UNKNOWN)


class OutboxMessage(Base):
    """One row per planned send; the unique key makes a second tick's insert a no-op."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    enrollment_id: Mapped[int | None] = mapped_column(
        ForeignKey("enrollments.id", ondelete="CASCADE")
    )
    step_id: Mapped[int | None] = mapped_column(ForeignKey("program_steps.id"))
    occurrence: Mapped[int] = mapped_column(Integer, default=0)
    purpose: Mapped[MessagePurpose] = mapped_column(_enum(MessagePurpose, "message_purpose"))
    channel: Mapped[Channel] = mapped_column(_enum(Channel, "channel"))
    subject: Mapped[str | None] = mapped_column(String(300))
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    status: Mapped[MessageStatus] = mapped_column(_enum(MessageStatus, "message_status"))
    planned_at: Mapped[datetime] = mapped_column()
    local_date: Mapped[date | None] = mapped_column(Date)
    sending_at: Mapped[datetime | None] = mapped_column()
    sent_at: Mapped[datetime | None] = mapped_column()
    delivered_at: Mapped[datetime | None] = mapped_column()
    provider_id: Mapped[str | None] = mapped_column(String(100))
    error: Mapped[str | None] = mapped_column(String(500))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: Handed to a send task that should have sent it by then (``campaigns.dispatching``).
    lease_until: Mapped[datetime | None] = mapped_column()

    __table_args__ = (
        UniqueConstraint("enrollment_id", "step_id", "occurrence", name="uq_outbox_step_once"),
        # In the redispatch order, so a backlog is read a batch at a time (migration 0008).
        _outbox_index("ix_outbox_planned", "planned_at", "id", statuses=OUTBOX_PLANNED),
        _outbox_index("ix_outbox_sending", "sending_at", statuses=OUTBOX_SENDING),
        _outbox_index("ix_outbox_unsettled", "patient_id", statuses=OUTBOX_UNSETTLED),
        Index("ix_outbox_patient", "patient_id", "id"),
        # "Which message does this reply answer": the newest one that reached the patient
        # on the channel, one index entry read whatever their history or the statistics
        # (the reply lookup writes the same statuses into its SQL).
        _outbox_index(
            "ix_outbox_answered", "patient_id", "channel", "sent_at", "id", statuses=REACHED
        ),
    )


def outbox_status_in(statuses: Sequence[MessageStatus]) -> ColumnElement[bool]:
    """The status test with the statuses written into the SQL (``literal_execute``), in the
    partial indexes' own order: a database uses a partial index only where it sees that the
    query implies the index's predicate, and a bound parameter hides that from a prepared
    statement's generic plan on PostgreSQL."""
    column = OutboxMessage.__table__.c.status
    if len(statuses) == 1:
        return column == bindparam(None, statuses[0], type_=column.type, literal_execute=True)
    values = bindparam(
        None, list(statuses), type_=column.type, expanding=True, literal_execute=True
    )
    return column.in_(values)


class InboundReply(Base):
    __tablename__ = "inbound_replies"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    enrollment_id: Mapped[int | None] = mapped_column(
        ForeignKey("enrollments.id", ondelete="SET NULL")
    )
    in_reply_to_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id", ondelete="SET NULL"))
    channel: Mapped[Channel] = mapped_column(_enum(Channel, "channel"))
    received_at: Mapped[datetime] = mapped_column()
    raw_text: Mapped[str] = mapped_column(Text)
    pain_score: Mapped[float | None] = mapped_column(Float)
    keywords: Mapped[list[str]] = mapped_column(JSON, default=list)
    flare_signal: Mapped[bool] = mapped_column(Boolean, default=False)
    crisis: Mapped[bool] = mapped_column(Boolean, default=False)
    provider_id: Mapped[str | None] = mapped_column(String(100), unique=True)

    __table_args__ = (Index("ix_replies_patient", "patient_id", "received_at"),)


class PainReport(Base):
    __tablename__ = "pain_reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    enrollment_id: Mapped[int | None] = mapped_column(
        ForeignKey("enrollments.id", ondelete="SET NULL")
    )
    reply_id: Mapped[int] = mapped_column(ForeignKey("inbound_replies.id", ondelete="CASCADE"))
    score: Mapped[float] = mapped_column(Float)
    reported_at: Mapped[datetime] = mapped_column()

    __table_args__ = (Index("ix_pain_patient_time", "patient_id", "reported_at"),)


class Event(Base):
    """Append-only audit of every pacing decision and state change: who, what and why."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column()
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    enrollment_id: Mapped[int | None] = mapped_column(
        ForeignKey("enrollments.id", ondelete="CASCADE")
    )
    actor: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(40))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(500))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (Index("ix_events_enrollment", "enrollment_id", "id"),)


class Alert(Base):
    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    enrollment_id: Mapped[int | None] = mapped_column(
        ForeignKey("enrollments.id", ondelete="SET NULL")
    )
    reply_id: Mapped[int | None] = mapped_column(
        ForeignKey("inbound_replies.id", ondelete="SET NULL")
    )
    kind: Mapped[AlertKind] = mapped_column(_enum(AlertKind, "alert_kind"))
    priority: Mapped[AlertPriority] = mapped_column(_enum(AlertPriority, "alert_priority"))
    status: Mapped[AlertStatus] = mapped_column(_enum(AlertStatus, "alert_status"))
    summary: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column()

    __table_args__ = (Index("ix_alerts_open", "status", "priority", "created_at"),)


class User(Base):
    """Staff and admins; patients never log in."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    password_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column()


class ApiToken(Base):
    """Only a hash is stored: a leaked database does not leak working tokens."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()

    user: Mapped[User] = relationship()


class LoginFailure(Base):
    """Recent failed log-ins per account, shared by every web process, for throttling."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(primary_key=True)
    account: Mapped[str] = mapped_column(String(320))
    at: Mapped[datetime] = mapped_column()

    __table_args__ = (Index("ix_login_failures_account_at", "account", "at"),)


class AuditEntry(Base):
    """Every staff/admin action: who, what, when, before and after. Append-only."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column()
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str | None] = mapped_column(String(64))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (Index("ix_audit_entity", "entity", "entity_id", "id"),)


class ProgramDraft(Base):
    """An admin's work in progress: the whole program folder as text, published as a version."""

    __tablename__ = "program_drafts"

    id: Mapped[int] = mapped_column(primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), unique=True)
    base_version_id: Mapped[int | None] = mapped_column(ForeignKey("program_versions.id"))
    spec_yaml: Mapped[str] = mapped_column(Text)
    files: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column()
    updated_by: Mapped[str] = mapped_column(String(320))


class Heartbeat(Base):
    """Last sign of life of each periodic job, so ``doctor`` and metrics can spot a dead beat."""

    __tablename__ = "heartbeats"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime] = mapped_column()
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ImmutableRowError(RuntimeError):
    """Raised when code tries to change history: events, or a published program version."""


_IMMUTABLE = (Event, ProgramVersion, ProgramStep, AuditEntry)


@event.listens_for(Session, "before_flush")
def _refuse_history_rewrites(session: Session, _context: Any, _instances: Any) -> None:
    """The event log is append-only and published versions never change under a patient."""
    for obj in session.dirty:
        if isinstance(obj, _IMMUTABLE) and session.is_modified(obj, include_collections=False):
            raise ImmutableRowError(f"{type(obj).__name__} rows are immutable once written")
    for obj in session.deleted:
        if isinstance(obj, Event | AuditEntry):
            raise ImmutableRowError(f"the {type(obj).__tablename__} log is append-only")
