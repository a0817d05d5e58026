"""Admin-written templates that would exhaust memory or spin forever are refused with a
message naming the step, and neither the web app nor a worker process is harmed."""

from __future__ import annotations

import dataclasses
import os
import time

import pytest

from campaigns import template_guard
from campaigns.programs import LoadedProgram, load_folder, validate_templates
from tests.conftest import REPO
from tests.factories import MINI

STEP = "steps/d2-write/sms.txt.j2"


def _program_with(sms: str) -> LoadedProgram:
    loaded = load_folder(MINI, REPO / "templates")
    return dataclasses.replace(loaded, files={**loaded.files, STEP: sms})


@pytest.mark.parametrize(
    "bomb",
    [
        '{{ "x" * 10**10 }}',
        '{{ "" | center(10**10) }}',
        '{{ "{:>10000000000}".format(1) }}',
    ],
)
def test_a_memory_bomb_is_a_problem_not_a_crash(bomb: str) -> None:
    problems = validate_templates(_program_with(bomb))
    assert len(problems) == 1, problems
    assert problems[0].file.startswith("steps/d2-write/")
    assert "MemoryError" in problems[0].message or "more than" in problems[0].message


def test_a_template_that_spins_is_stopped_and_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(template_guard, "LIMIT_SECONDS", 1.0)
    spin = "{% for a in range(99999) %}{% for b in range(99999) %}{% endfor %}{% endfor %}"
    started = time.monotonic()
    problems = validate_templates(_program_with(spin))
    assert time.monotonic() - started < 10
    assert [(p.file, p.line) for p in problems] == [("steps/d2-write/", None)]
    assert "took longer than 1 s" in problems[0].message


def test_well_behaved_templates_pass_and_the_child_is_gone() -> None:
    assert validate_templates(load_folder(MINI, REPO / "templates")) == []
    children = [p for p in os.listdir("/proc") if p.isdigit()]
    assert children, "/proc is readable, so the zombie check below means something"
    zombies = []
    for pid in children:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().split()
        except OSError:
            continue
        if fields[2] == "Z" and int(fields[3]) == os.getpid():
            zombies.append(pid)
    assert zombies == []
