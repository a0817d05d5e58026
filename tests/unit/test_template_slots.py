"""Shared renders with patient slots give exactly the bytes of a render per patient."""

from __future__ import annotations

from typing import Any

import pytest
from jinja2 import UndefinedError

from campaigns.enums import Channel
from campaigns.programs import bundled_folders, load_folder
from campaigns.rendering import (
    SYSTEM_MESSAGES,
    FilesLoader,
    TemplateLibrary,
    make_environment,
    render_channel,
)
from campaigns.template_slots import SlotRenderer, plan_template, shared_key
from tests.conftest import REPO

TEMPLATES = REPO / "templates"
NAMES = ["Ann", 'Zoë <b>&amp;</b> "O\'Neil"', "  spaced  ", "{{ 7*7 }}", "Ünïcödé — “q”", ""]
URLS = [
    "https://clinic.example/unsubscribe/abc.DEF-_1",
    "https://c.example/u?a=1&b=<2>/'\"",
]
TRENDS = [
    {"latest": None, "baseline": None, "direction": "unknown"},
    {"latest": 8.0, "baseline": 4.0, "direction": "worse"},
    {"latest": 2.0, "baseline": 5.5, "direction": "improving"},
    {"latest": 5, "baseline": 5.0, "direction": "steady"},
]


def _contexts(program_name: str) -> list[dict[str, Any]]:
    out = []
    for i, name in enumerate(NAMES):
        for j, trend in enumerate(TRENDS):
            day = 1 + (i * 7 + j * 3) % 42
            out.append(
                {
                    "patient": {"first_name": name},
                    "clinic": {"name": "Riverside & Co <Clinic>", "phone": "+1 555 010 0199"},
                    "unsubscribe_url": URLS[(i + j) % 2],
                    "program": {
                        "name": program_name,
                        "day": day,
                        "week": (day - 1) // 7 + 1,
                        "total_days": 42,
                    },
                    "trend": trend,
                }
            )
    return out


@pytest.mark.parametrize("folder", bundled_folders(TEMPLATES), ids=lambda f: f.name)
def test_every_step_of_every_shipped_program_renders_byte_identical(folder: Any) -> None:
    loaded = load_folder(folder, TEMPLATES)
    library = TemplateLibrary(TEMPLATES)
    plain = make_environment(FilesLoader(loaded.files))
    compared = 0
    for step in loaded.spec.steps:
        for channel in Channel:
            for ctx in _contexts(loaded.spec.name):
                ours = library.render_step(1, loaded.files, step.key, channel, ctx)
                straight = render_channel(plain, f"steps/{step.key}/", channel, ctx)
                assert ours == straight, (step.key, channel, ctx)
                compared += 1
    assert compared == len(loaded.spec.steps) * len(Channel) * len(NAMES) * len(TRENDS)


def test_shipped_step_templates_take_the_shared_path() -> None:
    loaded = load_folder(bundled_folders(TEMPLATES)[0], TEMPLATES)
    env = make_environment(FilesLoader(loaded.files))
    step_files = [name for name in loaded.files if name.startswith("steps/")]
    assert step_files
    assert all(plan_template(env, name) is not None for name in step_files)


@pytest.mark.parametrize("name", SYSTEM_MESSAGES)
@pytest.mark.parametrize("channel", list(Channel))
def test_system_messages_render_byte_identical(name: str, channel: Channel) -> None:
    library = TemplateLibrary(TEMPLATES)
    for ctx in _contexts("ignored"):
        del ctx["program"], ctx["trend"]
        straight = render_channel(library.system, f"system/{name}.", channel, ctx)
        assert library.render_system(name, channel, ctx) == straight


FALLBACKS = {
    "filtered": "Hi {{ patient.first_name|upper }}",
    "tested": "{% if patient.first_name %}Hi {{ patient.first_name }}{% endif %}",
    "assigned": "{% set n = unsubscribe_url %}{{ n }}",
    "indexed": "{{ patient['first_name'] }}",
    "whole": "{{ patient }}",
    "concat": "{{ 'x' ~ unsubscribe_url }}",
    "called": "{{ patient.first_name }} {{ range(2)|list }}",
    "filter_block": "{% filter upper %}{{ patient.first_name }}{% endfilter %}",
    "macro": "{% macro m(x) %}{{ x }}{% endmacro %}{{ m(patient.first_name) }}",
    "include": "{% include 'other.txt' %}",
    "shadowed": "{% for unsubscribe_url in [1] %}{{ unsubscribe_url }}{% endfor %}",
    "autoescape": "{% autoescape false %}{{ patient.first_name }}{% endautoescape %}",
    "self": "{% block a %}A{% endblock %}{{ self.a() }}",
    "captured": "{% set s %}{{ patient.first_name }}{% endset %}{{ s|length }}",
}


@pytest.mark.parametrize("source", list(FALLBACKS.values()), ids=list(FALLBACKS))
def test_templates_that_look_at_patient_values_are_rendered_per_patient(source: str) -> None:
    files = {"t.txt.j2": source, "t.html.j2": source, "other.txt": "{{ patient.first_name }}"}
    env = make_environment(FilesLoader(files))
    slots = SlotRenderer(env)
    for name in ("t.txt.j2", "t.html.j2"):
        assert plan_template(env, name) is None
        for first in ("ann", "Bob <b>"):
            ctx = {"patient": {"first_name": first}, "unsubscribe_url": "https://u/?a&b"}
            assert slots.render(name, ctx) == env.get_template(name).render(ctx)


@pytest.mark.parametrize("source", ["{{ lipsum(1) }}", "{{ ['a', 'b', 'c', 'd']|random }}"])
def test_templates_that_print_something_random_are_rendered_per_patient(source: str) -> None:
    env = make_environment(FilesLoader({"t.txt.j2": "{{ patient.first_name }}" + source}))
    assert plan_template(env, "t.txt.j2") is None
    ctx = {"patient": {"first_name": "A"}, "unsubscribe_url": "u"}
    slots = SlotRenderer(env)
    assert len({slots.render("t.txt.j2", ctx) for _ in range(30)}) > 1


def test_layout_values_and_loops_are_part_of_the_shared_key() -> None:
    files = {
        "layout.html.j2": "<h1>{{ program.name }}</h1>{% block body %}{% endblock %}"
        '<a href="{{ unsubscribe_url }}">x</a>',
        "t.html.j2": '{% extends "layout.html.j2" %}{% block body %}'
        "{% for i in [1, 2] %}{{ patient.first_name }}{{ i }}{% endfor %}"
        "{% if trend.latest == 1 %}one{% endif %}{{ trend.latest }}{% endblock %}",
    }
    env = make_environment(FilesLoader(files))
    plan = plan_template(env, "t.html.j2")
    assert plan is not None and plan.autoescape
    assert {"program", "trend"} <= set(plan.names)
    slots = SlotRenderer(env)
    for program in ("A & B", "C"):
        for latest in (1, 1.0, True, None, -0.0, 0.0):
            ctx = {
                "patient": {"first_name": "<Zoë>"},
                "unsubscribe_url": "https://u/?a&b",
                "program": {"name": program},
                "trend": {"latest": latest},
            }
            assert slots.render("t.html.j2", ctx) == env.get_template("t.html.j2").render(ctx)


def test_a_missing_value_still_fails_as_strict_undefined() -> None:
    env = make_environment(FilesLoader({"t.txt.j2": "{{ patient.first_name }} {{ clinic.name }}"}))
    with pytest.raises(UndefinedError):
        SlotRenderer(env).render(
            "t.txt.j2", {"patient": {"first_name": "A"}, "unsubscribe_url": ""}
        )


def test_values_that_print_differently_get_different_keys() -> None:
    values = [1, 1.0, True, "1", None, "None", -0.0, 0.0, {"a": 1}, {"a": 1.0}, {"a": "1"}]
    keys = {shared_key({"v": v}, ("v",)) for v in values}
    assert len(keys) == len(values)
    assert shared_key({}, ("v",)) not in keys
    assert shared_key({"v": {"a": {"b": 1}}}, ("v",)) is None
    assert shared_key({"v": [1]}, ("v",)) is None


def test_a_library_without_shared_renders_renders_the_same() -> None:
    loaded = load_folder(bundled_folders(TEMPLATES)[0], TEMPLATES)
    shared, full = TemplateLibrary(TEMPLATES), TemplateLibrary(TEMPLATES, shared_renders=False)
    step = loaded.spec.steps[0].key
    for channel in Channel:
        for ctx in _contexts(loaded.spec.name)[:4]:
            ours = shared.render_step(1, loaded.files, step, channel, ctx)
            assert full.render_step(1, loaded.files, step, channel, ctx) == ours
