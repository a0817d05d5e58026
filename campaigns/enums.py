"""Closed vocabularies of the domain, stored as strings so rows stay readable in SQL."""

from enum import StrEnum


class Channel(StrEnum):
    SMS = "sms"
    EMAIL = "email"


class Track(StrEnum):
    MAIN = "main"
    FLARE = "flare"


class StepKind(StrEnum):
    EDUCATION = "education"
    JOURNAL = "journal"
    MOVEMENT = "movement"
    CHECK_IN = "check-in"
    FLARE_SUPPORT = "flare-support"
    RESUME = "resume"


class EnrollmentState(StrEnum):
    ACTIVE = "active"
    FLARE = "flare"
    PAUSED = "paused"
    COMPLETED = "completed"
    WITHDRAWN = "withdrawn"
    OPTED_OUT = "opted-out"

    @property
    def receives_program(self) -> bool:
        return self in (EnrollmentState.ACTIVE, EnrollmentState.FLARE)

    @property
    def is_final(self) -> bool:
        return self in (EnrollmentState.COMPLETED, EnrollmentState.WITHDRAWN)


class MessageStatus(StrEnum):
    PLANNED = "planned"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    UNKNOWN = "unknown"


#: A message with one of these statuses reached the patient (what a reply can answer).
REACHED = (MessageStatus.SENT, MessageStatus.DELIVERED)


class MessagePurpose(StrEnum):
    """Program messages count toward the one-a-day limit; the rest answer the patient."""

    PROGRAM = "program"
    CRISIS = "crisis"
    HELP = "help"
    CONFIRMATION = "confirmation"


class AlertKind(StrEnum):
    CRISIS = "crisis"
    LONG_FLARE = "long-flare"
    EMAIL_BOUNCED = "email-bounced"


class AlertPriority(StrEnum):
    HIGH = "high"
    NORMAL = "normal"


class AlertStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Role(StrEnum):
    """Staff enrol and manage patients; admins also edit programs and manage users."""

    STAFF = "staff"
    ADMIN = "admin"
