"""The programs JSON API for admins: read versions, preview, save drafts, publish, what-if.

Bearer tokens or the session cookie (then with ``X-CSRF-Token`` on writes). Errors: 401 no
user, 403 not an admin, 404 unknown program/version/step, 422 with the problems (file, line).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, NoReturn

from fastapi import APIRouter, HTTPException, Path, Query, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns import draft_preview, drafts, version_diff, whatif
from campaigns.models import Program, ProgramStep, ProgramVersion, utcnow
from campaigns.program_schemas import (
    CalendarEntryOut,
    DiffOut,
    FileDiffOut,
    PreviewIn,
    PreviewOut,
    ProblemOut,
    ProgramDetail,
    ProgramSummary,
    PublishOut,
    SavedOut,
    SegmentsOut,
    SimulateIn,
    SimulateOut,
    StepOut,
    TemplateIn,
    VersionDetail,
    VersionSummary,
)
from campaigns.programs import Problem
from campaigns.web.deps import SessionDep
from campaigns.web.security import AdminUser, ApiCsrf

MAX_INT = 2**31 - 1  # the database column is a 32-bit integer
router = APIRouter(prefix="/api/programs", tags=["programs"], dependencies=[ApiCsrf])


def _not_found(exc: LookupError) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, str(exc.args[0] if exc.args else exc))


def _unprocessable(message: str, problems: list[Problem]) -> NoReturn:
    detail = {
        "message": message,
        "problems": [
            ProblemOut(file=p.file, line=p.line, message=p.message).model_dump() for p in problems
        ],
    }
    raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail)


def _program(session: Session, slug: str) -> Program:
    try:
        return drafts.get_program(session, slug)
    except LookupError as exc:
        raise _not_found(exc) from None


def _version(session: Session, program: Program, number: int) -> ProgramVersion:
    try:
        return drafts.get_version(session, program, number)
    except LookupError as exc:
        raise _not_found(exc) from None


def _steps(steps: list[ProgramStep]) -> list[StepOut]:
    ordered = sorted(steps, key=lambda s: (s.track != "main", s.position))
    return [
        StepOut(
            key=s.key, track=s.track, position=s.position, day=s.day, kind=s.kind, title=s.title
        )
        for s in ordered
    ]


def _summary(session: Session, program: Program) -> tuple[ProgramSummary, list[ProgramVersion]]:
    versions = drafts.versions_of(session, program)
    live = drafts.live_enrollments(session, [v.id for v in versions])
    summary = ProgramSummary(
        slug=program.slug,
        name=program.name,
        latest_version=versions[0].version if versions else None,
        live_enrollments=sum(live.values()),
        has_draft=drafts.find_draft(session, program) is not None,
    )
    return summary, versions


@router.get("")
def list_programs(session: SessionDep, _user: AdminUser) -> list[ProgramSummary]:
    programs = session.scalars(select(Program).order_by(Program.name)).all()
    return [_summary(session, p)[0] for p in programs]


@router.get("/{slug}")
def get_program(slug: str, session: SessionDep, _user: AdminUser) -> ProgramDetail:
    program = _program(session, slug)
    summary, versions = _summary(session, program)
    live = drafts.live_enrollments(session, [v.id for v in versions])
    latest = versions[0] if versions else None
    return ProgramDetail(
        **summary.model_dump(),
        description=program.description,
        versions=[
            VersionSummary(
                version=v.version,
                published_at=v.published_at,
                published_by=v.published_by,
                live_enrollments=live.get(v.id, 0),
            )
            for v in versions
        ],
        steps=_steps(latest.steps) if latest else [],
        pacing_rules=dict(latest.pacing_rules) if latest else {},
    )


@router.get("/{slug}/versions/{number}")
def get_version(
    slug: str, number: Annotated[int, Path(ge=1, le=MAX_INT)], session: SessionDep, _user: AdminUser
) -> VersionDetail:
    program = _program(session, slug)
    version = _version(session, program, number)
    return VersionDetail(
        slug=program.slug,
        version=version.version,
        checksum=version.checksum,
        cadence_days=version.cadence_days,
        sms_max_segments=version.sms_max_segments,
        pacing_rules=dict(version.pacing_rules),
        steps=_steps(version.steps),
        files={k: str(v) for k, v in version.files.items()},
    )


@router.get("/{slug}/diff")
def diff(
    slug: str,
    session: SessionDep,
    _user: AdminUser,
    a: Annotated[int, Query(ge=1, le=MAX_INT)],
    b: Annotated[int, Query(ge=1, le=MAX_INT)],
) -> DiffOut:
    program = _program(session, slug)
    old, new = _version(session, program, a), _version(session, program, b)
    files = [
        FileDiffOut(name=d.name, status=d.status, lines=d.lines)
        for d in version_diff.diff_versions(old, new)
    ]
    return DiffOut(a=a, b=b, files=files)


@router.post("/{slug}/preview")
def preview(slug: str, body: PreviewIn, session: SessionDep, _user: AdminUser) -> PreviewOut:
    program = _program(session, slug)
    try:
        draft = drafts.peek_draft(session, program)
        result = draft_preview.preview_step(draft, body.step, body.files)
    except drafts.DraftError as exc:
        _unprocessable("the draft's program.yaml is invalid", exc.problems)
    except LookupError as exc:
        raise _not_found(exc) from None
    seg = result.segments
    return PreviewOut(
        sms=result.sms,
        segments=SegmentsOut(encoding=seg.encoding, units=seg.units, segments=seg.segments)
        if seg
        else None,
        subject=result.subject,
        email_text=result.email_text,
        email_html=result.email_html,
        problems=[ProblemOut(file=p.file, line=p.line, message=p.message) for p in result.problems],
    )


@router.put("/{slug}/draft/steps/{key}")
def save_step(
    slug: str, key: str, body: TemplateIn, session: SessionDep, user: AdminUser
) -> SavedOut:
    program = _program(session, slug)
    try:
        draft = drafts.open_draft(session, program, by=user, now=utcnow())
        drafts.save_template(session, draft, key, body.files, by=user, now=utcnow())
    except drafts.DraftError as exc:
        _unprocessable("template refused", exc.problems)
    except LookupError as exc:
        raise _not_found(exc) from None
    session.commit()  # before answering: the session dependency commits after the response
    return SavedOut(step=key, saved=sorted(body.files))


@router.post("/{slug}/publish")
def publish(slug: str, session: SessionDep, user: AdminUser) -> PublishOut:
    program = _program(session, slug)
    try:
        version, created = drafts.publish(session, program, by=user, now=utcnow())
    except drafts.DraftError as exc:
        _unprocessable("the draft has problems; nothing was published", exc.problems)
    session.commit()
    return PublishOut(version=version.version, created=created)


@router.post("/{slug}/simulate")
def simulate(slug: str, body: SimulateIn, session: SessionDep, _user: AdminUser) -> SimulateOut:
    program = _program(session, slug)
    try:
        calendar = whatif.calendar_for(
            session, program, body.source, body.pattern, start=body.start or date.today()
        )
    except drafts.DraftError as exc:
        _unprocessable("the draft's program.yaml is invalid", exc.problems)
    except LookupError as exc:
        raise _not_found(exc) from None
    except ValueError as exc:
        _unprocessable(str(exc), [])
    return SimulateOut(
        pattern=body.pattern,
        source=body.source,
        calendar=[
            CalendarEntryOut(on=e.on, kind=e.kind, key=e.key, title=e.title) for e in calendar
        ],
    )
