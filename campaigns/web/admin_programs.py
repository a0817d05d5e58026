"""Admin pages for programs: steps, templates with a live preview, pacing, publish, diff,
migration and a what-if calendar. Admin-edited templates render only in the sandbox
(campaigns.rendering) and the email preview sits in a script-less sandboxed iframe."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import date
from itertools import groupby
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns import draft_preview, drafts, version_diff, version_migration, whatif
from campaigns.enums import StepKind, Track
from campaigns.models import Program, User, utcnow
from campaigns.pacing import PacingRules
from campaigns.programs import Problem
from campaigns.rendering import STEP_FILES, step_path
from campaigns.web.deps import SessionDep
from campaigns.web.pages import render
from campaigns.web.security import CSRF_FIELD, AdminUser, check_csrf

MAX_INT = 2**31 - 1  # the database column is a 32-bit integer
router = APIRouter(prefix="/admin/programs", include_in_schema=False)
Csrf = Annotated[str | None, Form(alias=CSRF_FIELD)]
EDITOR_FIELDS = (
    ("sms.txt.j2", "SMS", "tpl-sms", 5),
    ("subject.txt.j2", "Email subject", "tpl-subject", 2),
    ("email.txt.j2", "Email, plain text", "tpl-email-text", 12),
    ("email.html.j2", "Email, HTML", "tpl-email-html", 14),
)
_RULE_FIELDS = [f.name for f in fields(PacingRules) if f.name != "cadence_days"]


def _program(session: Session, slug: str) -> Program:
    try:
        return drafts.get_program(session, slug)
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None


def _back(session: Session, slug: str, query: str = "") -> RedirectResponse:
    """Commit, then redirect: the session dependency would commit only after the response,
    and the browser's next request must see the change."""
    session.commit()
    suffix = f"?{query}" if query else ""
    return RedirectResponse(f"/admin/programs/{slug}{suffix}", status.HTTP_303_SEE_OTHER)


@router.get("", response_class=HTMLResponse)
def programs_page(request: Request, session: SessionDep, _user: AdminUser) -> Response:
    rows = []
    for program in session.scalars(select(Program).order_by(Program.name)):
        versions = drafts.versions_of(session, program)
        live = drafts.live_enrollments(session, [v.id for v in versions])
        rows.append(
            {
                "slug": program.slug,
                "name": program.name,
                "latest_version": versions[0].version if versions else None,
                "live_enrollments": sum(live.values()),
                "has_draft": drafts.find_draft(session, program) is not None,
            }
        )
    return render(request, "admin/programs.html", {"rows": rows})


def _program_page(
    request: Request,
    session: Session,
    program: Program,
    *,
    status_code: int = 200,
    **extra: Any,
) -> Response:
    versions = drafts.versions_of(session, program)
    draft = drafts.find_draft(session, program)
    view = drafts.peek_draft(session, program)
    try:
        spec = drafts.spec_of(view)
    except drafts.DraftError as exc:
        extra.setdefault("problems", exc.problems)
        spec = None
    outline = [(t.value, spec.ordered(t)) for t in Track] if spec else []
    channels = {
        s.key: [
            label
            for label, name in (("SMS", "sms.txt.j2"), ("Email", "email.html.j2"))
            if step_path(s.key, name) in view.files
        ]
        for _, steps in outline
        for s in steps
    }
    rules = spec.rules().to_mapping() if spec else {}
    context = {
        "program": program,
        "versions": versions,
        "latest": versions[0] if versions else None,
        "live": drafts.live_enrollments(session, [v.id for v in versions]),
        "draft": draft,
        "has_draft": draft is not None,
        "outline": outline,
        "channels": channels,
        "pacing": [(name, rules.get(name)) for name in _RULE_FIELDS],
        "cadence_days": spec.cadence_days if spec else 1,
        "tracks": list(Track),
        "kinds": list(StepKind),
        "patterns": whatif.PATTERNS,
        "pattern": None,
        "source": "latest",
        "calendar": None,
        "problems": [],
        "sources": view.files,
        "migrated": None,
        **extra,
    }
    return render(request, "admin/program.html", context, status_code=status_code)


def _calendar(entries: Sequence[whatif.CalendarEntry]) -> list[tuple[date, list[Any]]]:
    return [(day, list(items)) for day, items in groupby(entries, key=lambda e: e.on)]


@router.get("/{slug}", response_class=HTMLResponse)
def program_page(
    request: Request,
    slug: str,
    session: SessionDep,
    _user: AdminUser,
    pattern: str | None = None,
    source: str = "latest",
    published: int | None = None,
    unchanged: int | None = None,
    migrated: int | None = None,
) -> Response:
    program = _program(session, slug)
    extra: dict[str, Any] = {"published": published, "unchanged": unchanged, "migrated": migrated}
    if pattern:
        try:
            entries = whatif.calendar_for(session, program, source, pattern, start=date.today())
            extra.update(pattern=pattern, source=source, calendar=_calendar(entries))
        except (ValueError, LookupError) as exc:
            extra["error"] = str(exc)
    return _program_page(request, session, program, **extra)


@router.post("/{slug}/publish")
def publish(
    request: Request, slug: str, session: SessionDep, user: AdminUser, csrf: Csrf = None
) -> Response:
    check_csrf(request, csrf)
    program = _program(session, slug)
    try:
        version, created = drafts.publish(session, program, by=user, now=utcnow())
    except drafts.DraftError as exc:
        return _program_page(
            request,
            session,
            program,
            status_code=422,
            error="Not published: fix these problems first.",
            problems=exc.problems,
        )
    key = "published" if created else "unchanged"
    return _back(session, slug, f"{key}={version.version}")


# --- steps -----------------------------------------------------------------------------------


def _step_page(
    request: Request,
    session: Session,
    program: Program,
    key: str,
    *,
    texts: dict[str, str] | None = None,
    problems: Sequence[Problem] = (),
    status_code: int = 200,
    saved: bool = False,
) -> Response:
    draft = drafts.peek_draft(session, program)
    try:
        step = next(s for s in drafts.spec_of(draft).steps if s.key == key)
    except StopIteration:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no step {key!r}") from None
    stored = {name: str(draft.files.get(step_path(key, name), "")) for name in STEP_FILES}
    texts = {**stored, **(texts or {})}
    by_file: dict[str, list[Problem]] = {}
    others: list[Problem] = []
    for p in problems:
        name = p.file.removeprefix(step_path(key, ""))
        (by_file.setdefault(name, []) if name in STEP_FILES else others).append(p)
    context = {
        "program": program,
        "step": step,
        "fields": EDITOR_FIELDS,
        "texts": texts,
        "full_sources": {step_path(key, n): t for n, t in texts.items()},
        "problems_by_file": by_file,
        "other_problems": others,
        "preview": draft_preview.preview_step(draft, key, texts),
        "saved": saved,
    }
    return render(request, "admin/step.html", context, status_code=status_code)


@router.get("/{slug}/steps/{key}", response_class=HTMLResponse)
def step_page(
    request: Request, slug: str, key: str, session: SessionDep, _user: AdminUser, saved: int = 0
) -> Response:
    program = _program(session, slug)
    return _step_page(request, session, program, key, saved=bool(saved))


@router.post("/{slug}/steps/{key}")
def save_step(
    request: Request,
    slug: str,
    key: str,
    session: SessionDep,
    user: AdminUser,
    sms: Annotated[str, Form(alias="sms.txt.j2")],
    subject: Annotated[str, Form(alias="subject.txt.j2")],
    email_text: Annotated[str, Form(alias="email.txt.j2")],
    email_html: Annotated[str, Form(alias="email.html.j2")],
    csrf: Csrf = None,
) -> Response:
    check_csrf(request, csrf)
    program = _program(session, slug)
    texts = dict(zip(STEP_FILES, (sms, subject, email_text, email_html), strict=True))
    try:
        draft = drafts.open_draft(session, program, by=user, now=utcnow())
        drafts.save_template(session, draft, key, texts, by=user, now=utcnow())
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except drafts.DraftError as exc:
        return _step_page(
            request, session, program, key, texts=texts, problems=exc.problems, status_code=422
        )
    session.commit()
    return RedirectResponse(
        f"/admin/programs/{slug}/steps/{key}?saved=1", status.HTTP_303_SEE_OTHER
    )


def _edit(
    request: Request, session: Session, program: Program, user: User, change: Any
) -> Response:
    """Open the draft, apply ``change(draft)``; problems re-render the program page."""
    try:
        draft = drafts.open_draft(session, program, by=user, now=utcnow())
        change(draft)
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except drafts.DraftError as exc:
        session.rollback()
        return _program_page(
            request, session, program, status_code=422, error="Not changed:", problems=exc.problems
        )
    return _back(session, program.slug)


@router.post("/{slug}/steps")
def add_step(
    request: Request,
    slug: str,
    session: SessionDep,
    user: AdminUser,
    key: Annotated[str, Form()],
    title: Annotated[str, Form()],
    track: Annotated[Track, Form()],
    kind: Annotated[StepKind, Form()],
    day: Annotated[str, Form()] = "",
    csrf: Csrf = None,
) -> Response:
    check_csrf(request, csrf)
    program = _program(session, slug)
    number = int(day) if day.strip().isdigit() else None
    return _edit(
        request,
        session,
        program,
        user,
        lambda d: drafts.add_step(
            session,
            d,
            key=key.strip(),
            track=track,
            kind=kind,
            title=title.strip(),
            day=number,
            by=user,
            now=utcnow(),
        ),
    )


@router.post("/{slug}/steps/{key}/remove")
def remove_step(
    request: Request, slug: str, key: str, session: SessionDep, user: AdminUser, csrf: Csrf = None
) -> Response:
    check_csrf(request, csrf)
    program = _program(session, slug)
    return _edit(
        request,
        session,
        program,
        user,
        lambda d: drafts.remove_step(session, d, key, by=user, now=utcnow()),
    )


@router.post("/{slug}/steps/{key}/move")
def move_step(
    request: Request,
    slug: str,
    key: str,
    session: SessionDep,
    user: AdminUser,
    offset: Annotated[int, Form(ge=-1, le=1)],
    csrf: Csrf = None,
) -> Response:
    check_csrf(request, csrf)
    program = _program(session, slug)
    return _edit(
        request,
        session,
        program,
        user,
        lambda d: drafts.move_step(session, d, key, offset, by=user, now=utcnow()),
    )


@router.post("/{slug}/pacing")
def save_pacing(
    request: Request,
    slug: str,
    session: SessionDep,
    user: AdminUser,
    cadence_days: Annotated[int, Form(ge=1, le=14)],
    flare_score_threshold: Annotated[float, Form()],
    flare_rise_points: Annotated[float, Form()],
    baseline_window: Annotated[int, Form()],
    flare_keywords: Annotated[str, Form()],
    flare_cadence_days: Annotated[int, Form()],
    resume_after_settled_reports: Annotated[int, Form()],
    resume_after_days: Annotated[int, Form()],
    long_flare_alert_days: Annotated[int, Form()],
    slower_max_cadence_days: Annotated[int, Form()],
    csrf: Csrf = None,
) -> Response:
    check_csrf(request, csrf)
    program = _program(session, slug)
    rules = {
        "flare_score_threshold": flare_score_threshold,
        "flare_rise_points": flare_rise_points,
        "baseline_window": baseline_window,
        "flare_keywords": [k.strip() for k in flare_keywords.split(",") if k.strip()],
        "flare_cadence_days": flare_cadence_days,
        "resume_after_settled_reports": resume_after_settled_reports,
        "resume_after_days": resume_after_days,
        "long_flare_alert_days": long_flare_alert_days,
        "slower_max_cadence_days": slower_max_cadence_days,
    }
    return _edit(
        request,
        session,
        program,
        user,
        lambda d: drafts.set_pacing(
            session, d, rules, cadence_days=cadence_days, by=user, now=utcnow()
        ),
    )


# --- versions --------------------------------------------------------------------------------


def _version_pair(session: Session, program: Program, a: int, b: int) -> tuple[Any, Any]:
    try:
        return drafts.get_version(session, program, a), drafts.get_version(session, program, b)
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None


@router.get("/{slug}/diff", response_class=HTMLResponse)
def diff_page(
    request: Request,
    slug: str,
    session: SessionDep,
    _user: AdminUser,
    a: Annotated[int, Query(ge=1, le=MAX_INT)],
    b: Annotated[int, Query(ge=1, le=MAX_INT)],
) -> Response:
    program = _program(session, slug)
    old, new = _version_pair(session, program, a, b)
    context = {"program": program, "a": a, "b": b, "diff": version_diff.diff_versions(old, new)}
    return render(request, "admin/diff.html", context)


@router.get("/{slug}/migrate", response_class=HTMLResponse)
def migrate_page(
    request: Request,
    slug: str,
    session: SessionDep,
    _user: AdminUser,
    from_: Annotated[int, Query(alias="from", ge=1, le=MAX_INT)],
    to: Annotated[int, Query(ge=1, le=MAX_INT)],
) -> Response:
    program = _program(session, slug)
    source, target = _version_pair(session, program, from_, to)
    try:
        landings = version_migration.plan_migration(session, source, target)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    context = {"program": program, "source": source, "target": target, "landings": landings}
    return render(request, "admin/migrate.html", context)


@router.post("/{slug}/migrate")
def migrate(
    request: Request,
    slug: str,
    session: SessionDep,
    user: AdminUser,
    from_version: Annotated[int, Form(ge=1, le=MAX_INT)],
    to_version: Annotated[int, Form(ge=1, le=MAX_INT)],
    csrf: Csrf = None,
) -> Response:
    check_csrf(request, csrf)
    program = _program(session, slug)
    source, target = _version_pair(session, program, from_version, to_version)
    try:
        moved = version_migration.migrate(session, source, target, by=user, now=utcnow())
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return _back(session, slug, f"migrated={len(moved)}")
