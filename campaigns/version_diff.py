"""What changed between two published versions of a program, file by file."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from campaigns.drafts import spec_yaml_of
from campaigns.enums import EnrollmentState
from campaigns.models import ProgramVersion

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


# --- comparing versions ----------------------------------------------------------------------


@dataclass(frozen=True)
class FileDiff:
    name: str
    status: str  # "added", "removed" or "changed"
    lines: list[str]


def diff_versions(a: ProgramVersion, b: ProgramVersion) -> list[FileDiff]:
    """Unified diffs, per file, from ``a`` to ``b``; ``program.yaml`` stands for the spec."""
    old = {SPEC_FILE: spec_yaml_of(a), **a.files}
    new = {SPEC_FILE: spec_yaml_of(b), **b.files}
    out: list[FileDiff] = []
    for name in sorted(set(old) | set(new), key=lambda n: (n != SPEC_FILE, n)):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        status = "added" if before is None else "removed" if after is None else "changed"
        lines = difflib.unified_diff(
            (before or "").splitlines(),
            (after or "").splitlines(),
            f"v{a.version}/{name}",
            f"v{b.version}/{name}",
            lineterm="",
        )
        out.append(FileDiff(name, status, list(lines)))
    return out
