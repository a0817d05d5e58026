"""Editing a program: a working draft per program, validated and published as a new version.

A draft is ``program.yaml`` text plus every template file, opened from the latest published
version. Edits never touch a published version (those are immutable); publishing stores the
draft as version N+1 and clears it, so enrolled patients stay on the text they signed up for
until an admin migrates them. Every change is audited with before and after.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.audit import audit
from campaigns.enums import EnrollmentState, StepKind, Track
from campaigns.models import Enrollment, Program, ProgramDraft, ProgramVersion, User
from campaigns.pacing import PacingRules
from campaigns.programs import (
    LoadedProgram,
    Problem,
    ProgramError,
    ProgramSpec,
    StepSpec,
    parse_spec,
    store_version,
    validate_templates,
)
from campaigns.rendering import STEP_FILES, step_path

SPEC_FILE = "program.yaml"
FINAL_STATES = (EnrollmentState.COMPLETED, EnrollmentState.WITHDRAWN)
STARTER_FILES = {
    "sms.txt.j2": "Hi {{ patient.first_name }}, {{ title }}. Reply with a number from 0 to 10.",
    "subject.txt.j2": "{{ title }}",
    "email.txt.j2": "Hi {{ patient.first_name }},\n\n{{ title }}.\n\n"
    "To stop these emails: {{ unsubscribe_url }}\n",
    "email.html.j2": '{% extends "layouts/email.html.j2" %}\n'
    "{% block title %}{{ title }}{% endblock %}\n"
    "{% block body %}\n<p>Hi {{ patient.first_name }},</p>\n<p>{{ title }}.</p>\n"
    "{% endblock %}\n",
}


class DraftError(ValueError):
    """A change refused because it would leave the program invalid; lists every problem."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def _fail(message: str, file: str = SPEC_FILE) -> DraftError:
    return DraftError([Problem(file, None, message)])


# --- finding programs and versions -----------------------------------------------------------


def get_program(session: Session, slug: str) -> Program:
    program = session.scalar(select(Program).where(Program.slug == slug))
    if program is None:
        raise LookupError(f"no program {slug!r}")
    return program


def versions_of(session: Session, program: Program) -> list[ProgramVersion]:
    query = select(ProgramVersion).where(ProgramVersion.program_id == program.id)
    return list(session.scalars(query.order_by(ProgramVersion.version.desc())))


def get_version(session: Session, program: Program, number: int) -> ProgramVersion:
    version = session.scalar(
        select(ProgramVersion).where(
            ProgramVersion.program_id == program.id, ProgramVersion.version == number
        )
    )
    if version is None:
        raise LookupError(f"{program.slug} has no version {number}")
    return version


def live_enrollments(session: Session, version_ids: list[int]) -> dict[int, int]:
    """Enrollments not yet completed or withdrawn, per version id."""
    rows = session.execute(
        select(Enrollment.version_id, func.count(Enrollment.id))
        .where(Enrollment.version_id.in_(version_ids), Enrollment.state.not_in(FINAL_STATES))
        .group_by(Enrollment.version_id)
    )
    return {vid: count for vid, count in rows}


def spec_yaml_of(version: ProgramVersion) -> str:
    """``program.yaml`` as a stored version implies it (name and description are the current)."""
    program = version.program
    steps = sorted(version.steps, key=lambda s: (s.track != Track.MAIN, s.position))
    data = {
        "slug": program.slug,
        "name": program.name,
        "description": program.description,
        "sms_max_segments": version.sms_max_segments,
        "cadence_days": version.cadence_days,
        "pacing": dict(version.pacing_rules),
        "steps": [_step_data(s.key, s.track, s.day, s.kind, s.title) for s in steps],
    }
    return _dump(data)


def _step_data(
    key: str, track: Track, day: int | None, kind: StepKind, title: str
) -> dict[str, Any]:
    out: dict[str, Any] = {"key": key, "track": track.value}
    if day is not None:
        out["day"] = day
    return {**out, "kind": kind.value, "title": title}


def _dump(data: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True, width=100)


# --- the draft -------------------------------------------------------------------------------


def find_draft(session: Session, program: Program) -> ProgramDraft | None:
    return session.scalar(select(ProgramDraft).where(ProgramDraft.program_id == program.id))


def peek_draft(session: Session, program: Program) -> ProgramDraft:
    """The draft, or an unsaved one from the latest version: for read-only uses like previews."""
    draft = find_draft(session, program)
    if draft is not None:
        return draft
    versions = versions_of(session, program)
    if not versions:
        raise LookupError(f"{program.slug} has no published version")
    latest = versions[0]
    return ProgramDraft(
        program_id=program.id,
        base_version_id=latest.id,
        spec_yaml=spec_yaml_of(latest),
        files=dict(latest.files),
    )


def open_draft(session: Session, program: Program, *, by: User, now: datetime) -> ProgramDraft:
    """The program's draft, opened from the latest version when there is none yet."""
    draft = find_draft(session, program)
    if draft is not None:
        return draft
    versions = versions_of(session, program)
    if not versions:
        raise LookupError(f"{program.slug} has no published version to start from")
    latest = versions[0]
    draft = ProgramDraft(
        program_id=program.id,
        base_version_id=latest.id,
        spec_yaml=spec_yaml_of(latest),
        files=dict(latest.files),
        updated_at=now,
        updated_by=by.email,
    )
    session.add(draft)
    session.flush()
    audit(session, by, "draft.open", "program", program.id, now=now, after={"base": latest.version})
    return draft


def spec_of(draft: ProgramDraft) -> ProgramSpec:
    """The draft's parsed ``program.yaml``; raises DraftError when it does not parse."""
    try:
        return parse_spec(draft.spec_yaml, SPEC_FILE)
    except ProgramError as exc:
        raise DraftError(exc.problems) from None


def _touch(draft: ProgramDraft, by: User, now: datetime) -> None:
    draft.updated_at, draft.updated_by = now, by.email


def _spec_data(draft: ProgramDraft) -> dict[str, Any]:
    spec = spec_of(draft)
    return spec.model_dump(mode="json", exclude_none=True)


def _write_spec(draft: ProgramDraft, data: Mapping[str, Any]) -> ProgramSpec:
    text = _dump(data)
    try:
        spec = parse_spec(text, SPEC_FILE)
    except ProgramError as exc:
        raise DraftError(exc.problems) from None
    draft.spec_yaml = text
    return spec


def step_of(spec: ProgramSpec, key: str) -> StepSpec:
    for step in spec.steps:
        if step.key == key:
            return step
    raise LookupError(f"no step {key!r}")


def save_template(
    session: Session,
    draft: ProgramDraft,
    key: str,
    sources: Mapping[str, str],
    *,
    by: User,
    now: datetime,
) -> None:
    """Replace some of a step's templates; refused (nothing saved) if the step then fails."""
    spec = spec_of(draft)
    step_of(spec, key)
    unknown = sorted(set(sources) - set(STEP_FILES))
    if unknown:
        raise _fail(f"unknown template file(s): {', '.join(unknown)}", step_path(key, unknown[0]))
    changed = {step_path(key, name): text.replace("\r\n", "\n") for name, text in sources.items()}
    files = {**draft.files, **changed}
    problems = check_step(spec, files, key)
    if problems:
        raise DraftError(problems)
    before = {path: draft.files.get(path) for path in changed}
    draft.files = files
    _touch(draft, by, now)
    audit(
        session,
        by,
        "draft.template",
        "program",
        draft.program_id,
        now=now,
        before=before,
        after=changed,
    )


def check_step(spec: ProgramSpec, files: Mapping[str, str], key: str) -> list[Problem]:
    """Every problem of one step's templates, rendered for a sample patient."""
    one = spec.model_copy(update={"steps": [step_of(spec, key)]})
    return validate_templates(LoadedProgram(one, dict(files)))


def add_step(
    session: Session,
    draft: ProgramDraft,
    *,
    key: str,
    track: Track,
    kind: StepKind,
    title: str,
    day: int | None,
    by: User,
    now: datetime,
) -> None:
    """Add a step with starter templates; main steps go in day order, flare before resume."""
    data = _spec_data(draft)
    new = _step_data(key, track, day if track == Track.MAIN else None, kind, title)
    data["steps"] = _normalised([*data["steps"], new])
    _write_spec(draft, data)
    starters = {
        step_path(key, name): text.replace("{{ title }}", title.replace("{", "("))
        for name, text in STARTER_FILES.items()
    }
    draft.files = {**draft.files, **starters}
    _touch(draft, by, now)
    audit(session, by, "draft.step.add", "program", draft.program_id, now=now, after=new)


def _normalised(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Main steps in day order (stable), then flare steps with the resume step last."""
    main = sorted(
        (s for s in steps if s["track"] == Track.MAIN.value), key=lambda s: s.get("day") or 0
    )
    flare = [s for s in steps if s["track"] != Track.MAIN.value]
    flare.sort(key=lambda s: s["kind"] == StepKind.RESUME.value)
    return main + flare


def remove_step(
    session: Session, draft: ProgramDraft, key: str, *, by: User, now: datetime
) -> None:
    data = _spec_data(draft)
    before = next((s for s in data["steps"] if s["key"] == key), None)
    if before is None:
        raise LookupError(f"no step {key!r}")
    data["steps"] = [s for s in data["steps"] if s["key"] != key]
    _write_spec(draft, data)
    prefix = step_path(key, "")
    draft.files = {p: t for p, t in draft.files.items() if not p.startswith(prefix)}
    _touch(draft, by, now)
    audit(session, by, "draft.step.remove", "program", draft.program_id, now=now, before=before)


def reorder_steps(
    session: Session, draft: ProgramDraft, track: Track, keys: list[str], *, by: User, now: datetime
) -> None:
    """Put one track's steps in ``keys`` order. Main steps keep the track's set of days, handed
    out in the new order; the resume step always stays last on the flare track."""
    data = _spec_data(draft)
    steps: list[dict[str, Any]] = data["steps"]
    current = [s for s in steps if s["track"] == track.value]
    if sorted(keys) != sorted(s["key"] for s in current):
        raise _fail(f"reorder must list each {track.value} step exactly once")
    by_key = {s["key"]: s for s in current}
    ordered = [by_key[k] for k in keys]
    if track == Track.MAIN:
        days = sorted(s["day"] for s in current)
        ordered = [{**s, "day": d} for s, d in zip(ordered, days, strict=True)]
    else:
        ordered.sort(key=lambda s: s["kind"] == StepKind.RESUME.value)
    others = [s for s in steps if s["track"] != track.value]
    data["steps"] = ordered + others if track == Track.MAIN else others + ordered
    _write_spec(draft, data)
    _touch(draft, by, now)
    audit(
        session,
        by,
        "draft.reorder",
        "program",
        draft.program_id,
        now=now,
        before={"keys": [s["key"] for s in current]},
        after={"keys": keys},
    )


def move_step(
    session: Session, draft: ProgramDraft, key: str, offset: int, *, by: User, now: datetime
) -> None:
    """Move one step up (-1) or down (+1) within its track."""
    spec = spec_of(draft)
    track = step_of(spec, key).track
    keys = [s.key for s in spec.ordered(track)]
    i = keys.index(key)
    j = min(max(i + offset, 0), len(keys) - 1)
    keys.insert(j, keys.pop(i))
    reorder_steps(session, draft, track, keys, by=by, now=now)


def set_pacing(
    session: Session,
    draft: ProgramDraft,
    pacing: Mapping[str, Any],
    *,
    cadence_days: int,
    by: User,
    now: datetime,
) -> None:
    try:
        rules = PacingRules.from_mapping(pacing, cadence_days=cadence_days)
    except (ValueError, TypeError) as exc:
        raise _fail(str(exc)) from None
    data = _spec_data(draft)
    before = {"pacing": data["pacing"], "cadence_days": data["cadence_days"]}
    data["pacing"], data["cadence_days"] = rules.to_mapping(), cadence_days
    _write_spec(draft, data)
    _touch(draft, by, now)
    audit(
        session,
        by,
        "draft.pacing",
        "program",
        draft.program_id,
        now=now,
        before=before,
        after={"pacing": data["pacing"], "cadence_days": cadence_days},
    )


def validate_draft(draft: ProgramDraft) -> list[Problem]:
    try:
        spec = spec_of(draft)
    except DraftError as exc:
        return exc.problems
    return validate_templates(LoadedProgram(spec, dict(draft.files)))


def publish(
    session: Session, program: Program, *, by: User, now: datetime
) -> tuple[ProgramVersion, bool]:
    """Store the draft as the next version and clear it; refused while it has problems.
    Returns the version and whether it is new (an unchanged draft re-uses the latest)."""
    draft = find_draft(session, program)
    if draft is None:
        raise _fail("there is no draft to publish")
    problems = validate_draft(draft)
    if problems:
        raise DraftError(problems)
    spec = spec_of(draft)
    if spec.slug != program.slug:
        raise _fail(f"slug must stay {program.slug!r}")
    version, created = store_version(session, LoadedProgram(spec, dict(draft.files)), by=by.email)
    session.delete(draft)
    session.flush()
    audit(
        session,
        by,
        "program.publish",
        "program",
        program.id,
        now=now,
        after={"version": version.version, "created": created},
    )
    return version, created
