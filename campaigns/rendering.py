"""Rendering patient messages from admin-edited Jinja2 in a sandbox.

Templates are untrusted text: one ``ImmutableSandboxedEnvironment`` per program version,
``StrictUndefined`` so a typo fails at validation rather than in a patient's inbox, and
compiled templates cached because compiling per message is ~50x slower than rendering.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

from jinja2 import (
    BaseLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
    select_autoescape,
)
from jinja2.sandbox import ImmutableSandboxedEnvironment

from campaigns.enums import Channel
from campaigns.segments import normalize_sms
from campaigns.template_slots import SlotRenderer

#: Per step: the four templates every program step provides.
STEP_FILES = ("sms.txt.j2", "subject.txt.j2", "email.txt.j2", "email.html.j2")
SYSTEM_MESSAGES = ("crisis", "help", "stopped", "started", "paused", "resumed", "slower")


@dataclass(frozen=True)
class RenderedMessage:
    channel: Channel
    body_text: str
    subject: str | None = None
    body_html: str | None = None


@dataclass(frozen=True)
class Trend:
    """A patient's recent scores, in words templates can use without arithmetic."""

    latest: float | None
    baseline: float | None
    direction: str

    def as_context(self) -> dict[str, Any]:
        return {"latest": self.latest, "baseline": self.baseline, "direction": self.direction}


def trend_of(scores: Sequence[float], window: int = 7) -> Trend:
    if not scores:
        return Trend(None, None, "unknown")
    latest = scores[-1]
    earlier = list(scores[:-1])[-window:]
    if not earlier:
        return Trend(latest, None, "unknown")
    base = float(median(earlier))
    if latest <= base - 1:
        return Trend(latest, base, "improving")
    if latest >= base + 1:
        return Trend(latest, base, "worse")
    return Trend(latest, base, "steady")


class FilesLoader(BaseLoader):
    """Templates from a stored version's files; the name doubles as the filename so
    tracebacks and validation errors point at ``steps/<key>/sms.txt.j2:<line>``."""

    def __init__(self, files: Mapping[str, str]) -> None:
        self.files = dict(files)

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        if template not in self.files:
            raise TemplateNotFound(template)
        return self.files[template], template, lambda: True

    def list_templates(self) -> list[str]:
        return sorted(self.files)


def make_environment(loader: BaseLoader) -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        loader=loader,
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
        trim_blocks=True,
        keep_trailing_newline=False,
        auto_reload=False,
        cache_size=2000,
    )


def step_path(step_key: str, filename: str) -> str:
    return f"steps/{step_key}/{filename}"


def render_channel(
    env: ImmutableSandboxedEnvironment,
    prefix: str,
    channel: Channel,
    context: Mapping[str, Any],
    slots: SlotRenderer | None = None,
) -> RenderedMessage:
    """Render the templates of one step or system message for one channel.

    ``prefix`` is ``steps/<key>/`` for program steps and ``system/<name>.`` for system ones.
    ``slots``, when given, reuses shared renders of ``env``'s templates (same output).
    """
    ctx = {**context, "channel": channel.value}

    def render(name: str) -> str:
        if slots is not None:
            return slots.render(f"{prefix}{name}", ctx).strip()
        template: Template = env.get_template(f"{prefix}{name}")
        return template.render(ctx).strip()

    if channel == Channel.SMS:
        return RenderedMessage(channel, normalize_sms(render("sms.txt.j2")))
    subject = " ".join(render("subject.txt.j2").split())
    text = render("email.txt.j2").strip() + "\n"
    html = render("email.html.j2")
    return RenderedMessage(channel, text, subject, html)


class TemplateLibrary:
    """Environments per program version (immutable, so cached forever) and one for system text."""

    def __init__(self, templates_dir: Path, *, shared_renders: bool = True) -> None:
        """``shared_renders=False`` renders every message in full (the benchmark's baseline)."""
        self._templates_dir = templates_dir
        self._shared = shared_renders
        self._system = make_environment(FileSystemLoader(str(templates_dir)))
        self._system_slots = SlotRenderer(self._system) if shared_renders else None
        self._versions: dict[int, ImmutableSandboxedEnvironment] = {}
        self._slots: dict[int, SlotRenderer] = {}

    @property
    def system(self) -> ImmutableSandboxedEnvironment:
        return self._system

    def for_version(
        self, version_id: int, files: Mapping[str, str]
    ) -> ImmutableSandboxedEnvironment:
        env = self._versions.get(version_id)
        if env is None:
            env = self._versions[version_id] = make_environment(FilesLoader(files))
        return env

    def render_step(
        self,
        version_id: int,
        files: Mapping[str, str],
        step_key: str,
        channel: Channel,
        context: Mapping[str, Any],
    ) -> RenderedMessage:
        env = self.for_version(version_id, files)
        slots = self._slots.get(version_id)
        if slots is None and self._shared:
            slots = self._slots[version_id] = SlotRenderer(env)
        return render_channel(env, f"steps/{step_key}/", channel, context, slots)

    def render_system(
        self, name: str, channel: Channel, context: Mapping[str, Any]
    ) -> RenderedMessage:
        if name not in SYSTEM_MESSAGES:
            raise ValueError(f"unknown system message {name!r}")
        return render_channel(self._system, f"system/{name}.", channel, context, self._system_slots)
