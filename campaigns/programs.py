"""Programs as data: a folder of ``program.yaml`` plus Jinja2 templates, validated as a whole
and stored as an immutable version so patients part-way through never see text change.
"""

from __future__ import annotations

import hashlib
import json
import re
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jinja2 import TemplateSyntaxError
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.enums import Channel, StepKind, Track
from campaigns.models import Program, ProgramStep, ProgramVersion
from campaigns.pacing import PacingRules, ProgramShape
from campaigns.rendering import (
    STEP_FILES,
    FilesLoader,
    make_environment,
    render_channel,
    step_path,
)
from campaigns.segments import count_segments
from campaigns.template_guard import TemplateBudgetExceeded, run_guarded

PROGRAM_FILE = "program.yaml"
LAYOUT_DIR = "layouts"


class StepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    track: Track
    day: int | None = Field(default=None, ge=1, le=366)
    kind: StepKind
    title: str = Field(min_length=1, max_length=200)


class ProgramSpec(BaseModel):
    """The schema of ``program.yaml``."""

    model_config = ConfigDict(extra="forbid")

    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    sms_max_segments: int = Field(default=2, ge=1, le=10)
    cadence_days: int = Field(default=1, ge=1, le=14)
    pacing: dict[str, Any] = Field(default_factory=dict)
    steps: list[StepSpec]

    @model_validator(mode="after")
    def _tracks_are_consistent(self) -> ProgramSpec:
        keys = [s.key for s in self.steps]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"duplicate step keys: {', '.join(dupes)}")
        main = [s for s in self.steps if s.track == Track.MAIN]
        if not main:
            raise ValueError("a program needs at least one main-track step")
        if any(s.day is None for s in main):
            raise ValueError("every main-track step needs a day")
        days = [s.day or 0 for s in main]
        if days != sorted(days):
            raise ValueError("main-track steps must be listed in day order")
        if sum(1 for s in self.steps if s.kind == StepKind.RESUME) > 1:
            raise ValueError("at most one step may be of kind 'resume'")
        return self

    def rules(self) -> PacingRules:
        return PacingRules.from_mapping(self.pacing, cadence_days=self.cadence_days)

    def ordered(self, track: Track) -> list[StepSpec]:
        """Main steps by day; flare support in file order, the resume step last."""
        steps = [s for s in self.steps if s.track == track]
        return sorted(steps, key=lambda s: (s.kind == StepKind.RESUME, s.day or 0))


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"


class ProgramError(Exception):
    """Every problem found in a program folder, each naming file, line and what is wrong."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class LoadedProgram:
    spec: ProgramSpec
    files: dict[str, str]

    @property
    def checksum(self) -> str:
        blob = json.dumps(
            {"spec": self.spec.model_dump(mode="json"), "files": self.files}, sort_keys=True
        )
        return hashlib.sha256(blob.encode()).hexdigest()


SAMPLE_CONTEXT: dict[str, Any] = {
    "patient": {"first_name": "Alexandria"},
    "program": {"name": "", "day": 1, "week": 1, "total_days": 42},
    "trend": {"latest": 8.0, "baseline": 4.0, "direction": "worse"},
    "clinic": {"name": "Riverside Pain Recovery Clinic", "phone": "+1 555 010 0199"},
    "unsubscribe_url": "https://clinic.example/u/" + "x" * 60,
}


def read_folder(folder: Path, templates_dir: Path) -> dict[str, str]:
    """Every template of the program plus the shared layouts, keyed by loader path."""
    files: dict[str, str] = {}
    for path in sorted(folder.rglob("*.j2")):
        files[path.relative_to(folder).as_posix()] = path.read_text(encoding="utf-8")
    for path in sorted((templates_dir / LAYOUT_DIR).rglob("*.j2")):
        files[f"{LAYOUT_DIR}/{path.relative_to(templates_dir / LAYOUT_DIR).as_posix()}"] = (
            path.read_text(encoding="utf-8")
        )
    return files


def parse_spec(text: str, source: str = PROGRAM_FILE) -> ProgramSpec:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ProgramError([Problem(source, line, f"invalid YAML: {exc}")]) from None
    try:
        spec = ProgramSpec.model_validate(data)
        spec.rules()
    except ValidationError as exc:
        raise ProgramError([_pydantic_problem(source, e) for e in exc.errors()]) from None
    except ValueError as exc:
        raise ProgramError([Problem(source, None, str(exc))]) from None
    except TypeError as exc:  # a pacing value of the wrong type, e.g. a list for a number
        raise ProgramError([Problem(source, None, f"pacing: {exc}")]) from None
    return spec


def _pydantic_problem(source: str, err: Mapping[str, Any]) -> Problem:
    loc = ".".join(str(p) for p in err["loc"])
    return Problem(source, None, f"{loc}: {err['msg']}" if loc else str(err["msg"]))


def load_folder(folder: Path, templates_dir: Path) -> LoadedProgram:
    """Read and fully validate a program folder; raises ProgramError listing every problem."""
    spec_path = folder / PROGRAM_FILE
    if not spec_path.is_file():
        raise ProgramError([Problem(str(spec_path), None, "program.yaml not found")])
    spec = parse_spec(spec_path.read_text(encoding="utf-8"), str(spec_path))
    if spec.slug != folder.name:
        raise ProgramError(
            [Problem(str(spec_path), None, f"slug {spec.slug!r} must equal folder {folder.name!r}")]
        )
    loaded = LoadedProgram(spec, read_folder(folder, templates_dir))
    problems = validate_templates(loaded)
    if problems:
        raise ProgramError([Problem(f"{folder}/{p.file}", p.line, p.message) for p in problems])
    return loaded


def validate_templates(loaded: LoadedProgram) -> list[Problem]:
    """Compile and render every step's templates for a sample patient, checking SMS length,
    in a child process capped in time and memory (``template_guard``)."""
    try:
        return run_guarded(render_check, loaded)
    except TemplateBudgetExceeded:
        pass
    # Name the culprits: each step alone, so the admin sees which file to fix.
    problems: list[Problem] = []
    for step in loaded.spec.steps:
        one = LoadedProgram(loaded.spec.model_copy(update={"steps": [step]}), loaded.files)
        try:
            problems += run_guarded(render_check, one)
        except TemplateBudgetExceeded as exc:
            hint = "look for large repetition, padding or nested loops"
            problems.append(Problem(f"steps/{step.key}/", None, f"a template {exc}: {hint}"))
    return problems


def render_check(loaded: LoadedProgram) -> list[Problem]:
    """``validate_templates`` without the guard: only for templates already known to behave."""
    env = make_environment(FilesLoader(loaded.files))
    problems: list[Problem] = []
    for step in loaded.spec.steps:
        missing = [f for f in STEP_FILES if step_path(step.key, f) not in loaded.files]
        problems += [Problem(step_path(step.key, f), None, "template missing") for f in missing]
        if missing:
            continue
        for channel in Channel:
            problems += _check_render(env, loaded.spec, step, channel)
    return problems


def _check_render(env: Any, spec: ProgramSpec, step: StepSpec, channel: Channel) -> list[Problem]:
    context = {**SAMPLE_CONTEXT, "program": {**SAMPLE_CONTEXT["program"], "name": spec.name}}
    try:
        message = render_channel(env, f"steps/{step.key}/", channel, context)
    except TemplateSyntaxError as exc:
        return [Problem(exc.name or step_path(step.key, "?"), exc.lineno, exc.message or "")]
    except (UndefinedError, SecurityError, TemplateError) as exc:
        name, line = _template_frame(exc)
        return [Problem(name or f"steps/{step.key}/", line, f"{type(exc).__name__}: {exc}")]
    except Exception as exc:  # an expression that fails when rendered: 1/0, range(10**9), ...
        name, line = _template_frame(exc)
        return [Problem(name or f"steps/{step.key}/", line, f"{type(exc).__name__}: {exc}")]
    if channel == Channel.SMS:
        info = count_segments(message.body_text)
        if info.segments > spec.sms_max_segments:
            return [
                Problem(
                    step_path(step.key, "sms.txt.j2"),
                    None,
                    f"SMS is {info.segments} segments ({info.units} {info.encoding} units) "
                    f"for a sample patient; the limit is {spec.sms_max_segments}",
                )
            ]
    elif not message.subject:
        return [Problem(step_path(step.key, "subject.txt.j2"), None, "email subject is empty")]
    return []


_TEMPLATE_NAME = re.compile(r"\.j2$")


def _template_frame(exc: BaseException) -> tuple[str | None, int | None]:
    """Jinja rewrites tracebacks so template lines appear as frames: report the deepest one."""
    found: tuple[str | None, int | None] = (None, None)
    for frame in traceback.extract_tb(exc.__traceback__):
        if _TEMPLATE_NAME.search(frame.filename):
            found = (frame.filename, frame.lineno)
    return found


def shape_of(spec: ProgramSpec) -> ProgramShape:
    flare = [s for s in spec.ordered(Track.FLARE) if s.kind != StepKind.RESUME]
    has_resume = any(s.kind == StepKind.RESUME for s in spec.steps)
    return ProgramShape(len(spec.ordered(Track.MAIN)), len(flare), has_resume)


def store_version(
    session: Session, loaded: LoadedProgram, *, by: str
) -> tuple[ProgramVersion, bool]:
    """Store as the next version; an unchanged folder returns the current one (idempotent)."""
    spec = loaded.spec
    program = session.scalar(select(Program).where(Program.slug == spec.slug))
    if program is None:
        program = Program(slug=spec.slug, name=spec.name, description=spec.description)
        session.add(program)
        session.flush()
    latest = session.scalar(
        select(ProgramVersion)
        .where(ProgramVersion.program_id == program.id)
        .order_by(ProgramVersion.version.desc())
        .limit(1)
    )
    if latest is not None and latest.checksum == loaded.checksum:
        return latest, False
    number = (
        session.scalar(
            select(func.max(ProgramVersion.version)).where(ProgramVersion.program_id == program.id)
        )
        or 0
    ) + 1
    program.name, program.description = spec.name, spec.description
    version = ProgramVersion(
        program=program,
        version=number,
        checksum=loaded.checksum,
        cadence_days=spec.cadence_days,
        sms_max_segments=spec.sms_max_segments,
        pacing_rules=spec.rules().to_mapping(),
        files=loaded.files,
        published_by=by,
    )
    session.add(version)
    for track in Track:
        for position, step in enumerate(spec.ordered(track)):
            session.add(
                ProgramStep(
                    version=version,
                    key=step.key,
                    track=track,
                    position=position,
                    day=step.day,
                    kind=step.kind,
                    title=step.title,
                )
            )
    session.flush()
    return version, True


def bundled_folders(templates_dir: Path) -> list[Path]:
    """The program folders shipped under ``templates/programs``, in a stable order."""
    return sorted(p.parent for p in (templates_dir / "programs").glob(f"*/{PROGRAM_FILE}"))


def latest_version_id(session: Session, slug: str) -> int | None:
    return session.scalar(
        select(ProgramVersion.id)
        .join(Program)
        .where(Program.slug == slug)
        .order_by(ProgramVersion.version.desc())
        .limit(1)
    )
