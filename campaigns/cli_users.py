"""``campaigns users``: bootstrap the first admin, add staff, issue API tokens."""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer
from rich.console import Console
from sqlalchemy import select

from campaigns.accounts import AccountError, create_user, issue_token
from campaigns.audit import audit
from campaigns.enums import Role
from campaigns.models import User, utcnow
from campaigns.runtime import build_runtime
from config.settings import SettingsError, get_settings

users_app = typer.Typer(help="Staff and admin accounts.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@users_app.command("create")
def create(
    email: Annotated[str, typer.Option(help="Log-in email.")],
    name: Annotated[str, typer.Option(help="Name shown in the app and the audit log.")],
    admin: Annotated[bool, typer.Option("--admin", help="Admins also edit programs.")] = False,
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            envvar="CAMPAIGNS_NEW_USER_PASSWORD",
            help="At least 12 characters.",
        ),
    ] = "",
) -> None:
    """Create a staff account (``--admin`` for the first administrator)."""
    try:
        rt = build_runtime(get_settings())
    except SettingsError as exc:
        _fail(str(exc), 2)
    role = Role.ADMIN if admin else Role.STAFF
    now = utcnow()
    try:
        with rt.session() as session:
            user = create_user(
                session, email=email, name=name, password=password, role=role, now=now
            )
            audit(
                session,
                None,
                "create",
                "user",
                user.id,
                now=now,
                after={"email": user.email, "role": role.value},
            )
            user_id = user.id
    except AccountError as exc:
        _fail(str(exc))
    console.print(f"created {role.value} account {user_id}")


@users_app.command("token")
def token(
    email: Annotated[str, typer.Option(help="Whose token.")],
    name: Annotated[str, typer.Option(help="What the token is for.")] = "integration",
) -> None:
    """Issue an API bearer token; it is printed once and only its hash is stored."""
    rt = build_runtime(get_settings())
    now = utcnow()
    with rt.session() as session:
        user = session.scalar(select(User).where(User.email == email.strip().lower()))
        if user is None:
            _fail(f"no account for {email}")
        issued = issue_token(session, user, name, now=now)
        audit(
            session,
            user,
            "issue-token",
            "api_token",
            issued.token.id,
            now=now,
            after={"name": name},
        )
    console.print(issued.secret, highlight=False)
