"""JSON in and out of the programs API (``/api/programs``)."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field

from campaigns.enums import StepKind, Track


class ProblemOut(BaseModel):
    file: str
    line: int | None
    message: str


class ProgramSummary(BaseModel):
    slug: str
    name: str
    latest_version: int | None
    live_enrollments: int
    has_draft: bool


class StepOut(BaseModel):
    key: str
    track: Track
    position: int
    day: int | None
    kind: StepKind
    title: str


class VersionSummary(BaseModel):
    version: int
    published_at: datetime
    published_by: str
    live_enrollments: int


class ProgramDetail(ProgramSummary):
    description: str
    versions: list[VersionSummary]
    steps: list[StepOut]
    pacing_rules: dict[str, object]


class VersionDetail(BaseModel):
    slug: str
    version: int
    checksum: str
    cadence_days: int
    sms_max_segments: int
    pacing_rules: dict[str, object]
    steps: list[StepOut]
    files: dict[str, str]


class FileDiffOut(BaseModel):
    name: str
    status: str
    lines: list[str]


class DiffOut(BaseModel):
    a: int
    b: int
    files: list[FileDiffOut]


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    step: str = Field(max_length=64)
    files: dict[str, str] = Field(
        default_factory=dict, description="Unsaved template text by file name, e.g. sms.txt.j2"
    )


class SegmentsOut(BaseModel):
    encoding: str
    units: int
    segments: int


class PreviewOut(BaseModel):
    sms: str | None
    segments: SegmentsOut | None
    subject: str | None
    email_text: str | None
    email_html: str | None
    problems: list[ProblemOut]


class TemplateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    files: dict[str, str] = Field(min_length=1, description="Template text by file name")


class SavedOut(BaseModel):
    step: str
    saved: list[str]


class PublishOut(BaseModel):
    version: int
    created: bool


class SimulateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pattern: str = Field(default="steady", description="steady, mid-flare or long-flare")
    source: str = Field(default="latest", description="'latest', 'draft' or a version number")
    start: date | None = None


class CalendarEntryOut(BaseModel):
    on: date
    kind: str
    key: str | None
    title: str


class SimulateOut(BaseModel):
    pattern: str
    source: str
    calendar: list[CalendarEntryOut]
