"""Previews of a draft step for a sample patient, as the admin types."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2.exceptions import TemplateError

from campaigns.drafts import check_step, spec_of, step_of
from campaigns.enums import Channel
from campaigns.models import ProgramDraft
from campaigns.programs import SAMPLE_CONTEXT, Problem, ProgramSpec, StepSpec
from campaigns.rendering import STEP_FILES, FilesLoader, make_environment, render_channel, step_path
from campaigns.segments import SegmentInfo, count_segments


@dataclass(frozen=True)
class Preview:
    sms: str | None
    segments: SegmentInfo | None
    subject: str | None
    email_text: str | None
    email_html: str | None
    problems: list[Problem]


def sample_context(spec: ProgramSpec, step: StepSpec) -> dict[str, Any]:
    total = max((s.day or 0 for s in spec.steps), default=1)
    day = step.day or 1
    program = {"name": spec.name, "day": day, "week": (day - 1) // 7 + 1, "total_days": total}
    return {**SAMPLE_CONTEXT, "program": program}


def preview_step(draft: ProgramDraft, key: str, sources: Mapping[str, str]) -> Preview:
    """Render one step from unsaved text for a sample patient, in the sandbox."""
    spec = spec_of(draft)
    step = step_of(spec, key)
    edits = {step_path(key, n): t for n, t in sources.items() if n in STEP_FILES}
    files = {**draft.files, **edits}
    problems = check_step(spec, files, key)
    env = make_environment(FilesLoader(files))
    context = sample_context(spec, step)
    rendered = {}
    # Rendered here only once the guarded check has shown the templates stay in budget; a
    # failure is reported, with file and line, by ``problems``.
    if not any(p.line is None and p.file == f"steps/{key}/" for p in problems):
        for channel in Channel:
            with contextlib.suppress(TemplateError):
                rendered[channel] = render_channel(env, f"steps/{key}/", channel, context)
    sms, email = rendered.get(Channel.SMS), rendered.get(Channel.EMAIL)
    return Preview(
        sms=sms.body_text if sms else None,
        segments=count_segments(sms.body_text) if sms else None,
        subject=email.subject if email else None,
        email_text=email.body_text if email else None,
        email_html=email.body_html if email else None,
        problems=problems,
    )
