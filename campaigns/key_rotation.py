"""Re-encrypt stored contacts under the newest data key and re-hash them with the current
lookup key, so an old key can be retired (or a leaked one replaced)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from sqlalchemy import Text, select, type_coerce, update
from sqlalchemy.orm import Session

from campaigns.field_crypto import FieldKeyError, FieldKeys
from campaigns.models import Patient

CHUNK = 500
_table = Patient.__table__.c
#: The stored tokens as text, so one unreadable row is reported instead of failing the chunk.
_RAW = (
    Patient.id,
    type_coerce(_table.phone_ciphertext, Text),
    type_coerce(_table.email_ciphertext, Text),
)


def _decrypted(
    keys: FieldKeys, phone_token: str | None, email_token: str | None
) -> tuple[str | None, str | None] | None:
    """(phone, email) from their stored tokens, or None if these keys cannot open them."""
    try:
        phone = keys.decrypt(phone_token) if phone_token else None
        email = keys.decrypt(email_token) if email_token else None
    except FieldKeyError:
        return None
    return phone, email


@dataclass
class RotationResult:
    patients: int = 0
    unreadable: list[int] = field(default_factory=list)


def reencrypt_patients(
    sessions: Callable[[], AbstractContextManager[Session]], keys: FieldKeys, *, chunk: int = CHUNK
) -> RotationResult:
    """One transaction per chunk: a run that stops half-way leaves every row readable (the old
    key still opens the rest), and running it again finishes the job."""
    result, last = RotationResult(), 0
    while True:
        with sessions() as session:
            raw = session.execute(
                select(*_RAW).where(Patient.id > last).order_by(Patient.id).limit(chunk)
            ).all()
            if not raw:
                return result
            rows = []
            for pid, phone_token, email_token in raw:
                contacts = _decrypted(keys, phone_token, email_token)
                if contacts is None:
                    result.unreadable.append(pid)
                    continue
                phone, email = contacts
                rows.append(
                    {"id": pid, "phone_e164": phone, "email": email}
                    | Patient.lookup_columns(phone, email)
                )
            if rows:
                session.execute(update(Patient), rows)
            result.patients += len(rows)
            last = raw[-1][0]


def check_newest(session: Session, keys: FieldKeys) -> str | None:
    """What is wrong with the keys against the newest stored patient, in plain words."""
    row = session.execute(select(*_RAW).order_by(Patient.id.desc()).limit(1)).first()
    if row is None:
        return None
    pid, phone_token, email_token = row
    contacts = _decrypted(keys, phone_token, email_token)
    if contacts is None:
        return (
            f"patient {pid}'s contacts do not decrypt with CAMPAIGNS_DATA_KEYS: "
            "is it the key set this database was written with?"
        )
    phone, email = contacts
    stored = session.execute(
        select(Patient.phone_hash, Patient.email_hash).where(Patient.id == pid)
    ).one()

    def hashed(key: int) -> tuple[str | None, str | None]:
        return (
            keys.lookup_hash("phone", phone, key=key) if phone else None,
            keys.lookup_hash("email", email, key=key) if email else None,
        )

    if tuple(stored) not in [hashed(i) for i in range(len(keys.lookups))]:
        return (
            "lookup hashes were made with another CAMPAIGNS_LOOKUP_KEY, so replies will not "
            "find their patient: restore the old key, or list it after the new one "
            "(CAMPAIGNS_LOOKUP_KEY=new,old) and run `campaigns keys reencrypt`"
        )
    return None
