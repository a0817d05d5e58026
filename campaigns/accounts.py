"""Staff and admin accounts: argon2 password hashes, log-in throttling, API tokens."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from campaigns import email_check
from campaigns.enums import Role
from campaigns.models import ApiToken, LoginFailure, User

_hasher = PasswordHasher()
#: Failed log-ins allowed per account in the window before it is locked for the window.
MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)
MIN_PASSWORD = 12
#: Verified against when the account does not exist, so timing does not reveal accounts.
_DUMMY_HASH = _hasher.hash("not-a-real-password-0000")


class AccountError(ValueError):
    """Bad input for an account, with a message safe to show."""


class LoginThrottled(Exception):
    def __init__(self, retry_after: timedelta) -> None:
        super().__init__("too many failed log-ins; try again later")
        self.retry_after = retry_after


def normalize_email(raw: str) -> str:
    try:
        return email_check.normalized(raw).lower()
    except email_check.EmailNotValidError as exc:
        raise AccountError(f"email: {exc}") from None


def create_user(
    session: Session, *, email: str, name: str, password: str, role: Role, now: datetime
) -> User:
    address = normalize_email(email)
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"password: must be at least {MIN_PASSWORD} characters")
    if session.scalar(select(User.id).where(User.email == address)) is not None:
        raise AccountError(f"email: an account for {address} already exists")
    user = User(
        email=address,
        name=name.strip() or address,
        role=role,
        password_hash=_hasher.hash(password),
        created_at=now,
    )
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, email: str, password: str, *, now: datetime) -> User | None:
    """The user, or None; raises LoginThrottled when the account has failed too often."""
    account = email.strip().lower()
    since = now - FAILURE_WINDOW
    failures = (
        session.scalar(
            select(func.count(LoginFailure.id)).where(
                LoginFailure.account == account, LoginFailure.at > since
            )
        )
        or 0
    )
    if failures >= MAX_FAILURES:
        raise LoginThrottled(FAILURE_WINDOW)
    user = session.scalar(select(User).where(User.email == account, User.active.is_(True)))
    if user is None or not _verify(user.password_hash, password):
        if user is None:
            _verify(_DUMMY_HASH, password)
        session.add(LoginFailure(account=account, at=now))
        return None
    session.execute(delete(LoginFailure).where(LoginFailure.account == account))
    user.last_login_at = now
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user


def _verify(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # shown once, never stored


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_token(session: Session, user: User, name: str, *, now: datetime) -> IssuedToken:
    secret = "cmp_" + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user.id, name=name, token_hash=_digest(secret), created_at=now)
    session.add(token)
    session.flush()
    return IssuedToken(token, secret)


def user_for_token(session: Session, secret: str, *, now: datetime) -> User | None:
    token = session.scalar(
        select(ApiToken).where(
            ApiToken.token_hash == _digest(secret), ApiToken.revoked_at.is_(None)
        )
    )
    if token is None or not token.user.active:
        return None
    token.last_used_at = now
    return token.user
