"""What changed between two published versions of a program, file by file."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from campaigns.drafts import SPEC_FILE, spec_yaml_of
from campaigns.models import ProgramVersion

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
