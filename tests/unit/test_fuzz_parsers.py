"""Fuzzing the program-file boundary: ``parse_spec`` and ``validate_templates``.

Whatever a clinician types into ``program.yaml`` or a template, the loader answers with a
``ProgramError`` (or a list of problems) naming a file, and never with any other exception.
``parse_reply`` is already fuzzed in ``tests/unit/test_replies.py`` and is not repeated here.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns.programs import (
    PROGRAM_FILE,
    LoadedProgram,
    ProgramError,
    load_folder,
    parse_spec,
    validate_templates,
)
from campaigns.rendering import step_path

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "templates"
BUNDLED = TEMPLATES / "programs" / "retrain-the-alarm"
MINI = REPO / "tests" / "fixtures" / "programs" / "mini"
BUNDLED_DATA: dict[str, Any] = yaml.safe_load((BUNDLED / PROGRAM_FILE).read_text("utf-8"))

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_names_files(exc: ProgramError, source: str) -> None:
    assert exc.problems, "a ProgramError must list at least one problem"
    for problem in exc.problems:
        assert problem.file == source
        assert isinstance(problem.message, str) and problem.message
        assert problem.line is None or problem.line >= 1


def parse_or_problem(text: str, source: str = "fuzz/program.yaml") -> None:
    try:
        parse_spec(text, source)
    except ProgramError as exc:
        assert_names_files(exc, source)


# -- parse_spec on arbitrary YAML text -------------------------------------------------------

YAML_PIECES = st.sampled_from(
    [
        "slug: mini\n", "name: x\n", "steps:\n", "  - ", "{", "}", "[", "]", ": ", "- ",
        "!!python/object:os.system ", "!!binary ", "&a ", "*a ", "---\n", "...\n", "'", '"',
        "\t", "\n", "  ", "pacing: ", "day: ", "1e309", "-1", "999999999999999999999999",
        "null", "~", "true", ".nan", ".inf", "key: d1\n", "track: main\n", "kind: education\n",
        "%YAML 1.1\n", "? ", "|\n", ">\n", "#", "\x00", "\ufeff", "é", "🙂",
    ]
)  # fmt: skip


@FUZZ
@given(st.one_of(st.text(max_size=400), st.lists(YAML_PIECES, max_size=40).map("".join)))
def test_parse_spec_on_arbitrary_text_raises_only_program_error(text: str) -> None:
    parse_or_problem(text)


# -- parse_spec on structurally mutated copies of the bundled program.yaml -------------------

HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**30, -(10**30), 2**63, float("inf"), float("nan"), 1e308]),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, (*prefix, index))
    return out


ALL_PATHS = [p for p in _paths(BUNDLED_DATA) if p]


@st.composite
def mutated_program(draw: st.DrawFn) -> Any:
    data = copy.deepcopy(BUNDLED_DATA)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(ALL_PATHS))
        parent: Any = data
        try:
            for part in path[:-1]:
                parent = parent[part]
            parent[path[-1]]  # the path may be gone after earlier mutations
        except (KeyError, IndexError, TypeError):
            continue
        action = draw(st.sampled_from(["delete", "replace", "wrap", "duplicate"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "replace":
            parent[path[-1]] = draw(HOSTILE)
        elif action == "wrap":
            parent[path[-1]] = [parent[path[-1]]]
        elif isinstance(parent, list):
            parent.append(copy.deepcopy(parent[path[-1]]))
        else:
            parent[path[-1] if isinstance(path[-1], str) else "extra"] = draw(HOSTILE)
    if draw(st.booleans()) and isinstance(data, dict):
        data[draw(st.sampled_from(["pacing", "steps", "slug", "cadence_days"]))] = draw(HOSTILE)
    return data


@FUZZ
@given(mutated_program())
def test_parse_spec_on_mutated_bundled_program_raises_only_program_error(data: Any) -> None:
    parse_or_problem(yaml.safe_dump(data, allow_unicode=True))


@FUZZ
@given(
    st.sampled_from(
        [
            "flare_score_threshold", "flare_rise_points", "baseline_window", "flare_keywords",
            "flare_cadence_days", "resume_after_settled_reports", "resume_after_days",
            "long_flare_alert_days", "slower_max_cadence_days",
        ]
    ),
    HOSTILE,
)  # fmt: skip
def test_any_pacing_value_of_the_wrong_type_is_a_program_error(name: str, value: Any) -> None:
    data = copy.deepcopy(BUNDLED_DATA)
    data["pacing"][name] = value
    parse_or_problem(yaml.safe_dump(data, allow_unicode=True))


def test_bundled_program_still_parses() -> None:
    assert parse_spec((BUNDLED / PROGRAM_FILE).read_text("utf-8")).slug == "retrain-the-alarm"


# -- validate_templates on random Jinja ------------------------------------------------------

JINJA_PIECES = st.sampled_from(
    [
        "{{", "}}", "{%", "%}", "{#", "#}", " ", "\n", "patient", ".first_name", "program",
        ".name", "clinic", ".phone", "trend", ".latest", "unsubscribe_url", "nope", ".nope",
        "|upper", "|lower", "|length", "|default('x')", "|round", "|int", "|e", "|safe",
        "|join(',')", "|attr('__class__')", "|nope", "(", ")", "[", "]", "'", '"', "0", "1",
        "if", "endif", "for x in", "endfor", "else", "set y =", "range(3)", "range(10**9)",
        "x", "y", "loop.index", "__class__", ".__class__", ".__mro__", ".__subclasses__()",
        ".__globals__", ".__init__", "cycler", "joiner", "lipsum", "namespace()",
        ".mro()", "self", "[0]", "['__class__']", "'a'.__class__", "().__class__.__base__",
        "include 'steps/d1-hello/sms.txt.j2'", "include 'nope.j2'", "extends 'layouts/nope.j2'",
        "import 'x' as y", "macro m()", "endmacro", "m()", "call m()", "endcall", "raw",
        "endraw", "filter upper", "endfilter", "with", "endwith", "1/0", "x.append(1)",
        "{}.update(a=1)", "[].pop()", "~", "+", "*", "é", "🙂", "\x00",
    ]
)  # fmt: skip

MINI_FILES = {
    p.relative_to(MINI).as_posix(): p.read_text("utf-8") for p in sorted(MINI.rglob("*.j2"))
}
MINI_LOADED = load_folder(MINI, TEMPLATES)
TEMPLATE_NAMES = sorted(MINI_FILES)


class Sentinel:
    """Reachable only by escaping the sandbox; touching it would flip ``touched``."""

    touched = False


@FUZZ
@given(
    st.sampled_from(TEMPLATE_NAMES),
    st.one_of(st.lists(JINJA_PIECES, max_size=30).map("".join), st.text(max_size=200)),
    st.booleans(),
)
def test_validate_templates_returns_problems_and_never_crashes(
    name: str, text: str, replace: bool
) -> None:
    files = dict(MINI_LOADED.files)
    files[name] = text if replace else files[name] + text
    problems = validate_templates(LoadedProgram(MINI_LOADED.spec, files))
    for problem in problems:
        assert isinstance(problem.file, str) and problem.file
        assert isinstance(problem.message, str)
    assert not Sentinel.touched


SANDBOX_ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.system('true') }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ patient.__class__.__base__.__subclasses__() }}",
    "{{ ({}).update(a=1) }}",
    "{{ [].append(1) }}",
    "{{ patient|attr('__class__') }}",
    "{{ range(10**9)|list|length }}",
    "{{ 1/0 }}",
    "{{ 'a' + 1 }}",
    "{% include 'steps/d1-hello/sms.txt.j2' %}",
]


@pytest.mark.parametrize("text", SANDBOX_ESCAPES)
def test_sandbox_escapes_are_reported_as_problems(text: str) -> None:
    files = dict(MINI_LOADED.files)
    files[step_path("d1-hello", "sms.txt.j2")] = text
    problems = validate_templates(LoadedProgram(MINI_LOADED.spec, files))
    assert problems and all(p.file for p in problems)
