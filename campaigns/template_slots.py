"""Render a template once per shared context and fill in each patient's own fields.

At 09:00 thousands of patients get the same step whose text differs only in their first
name and their unsubscribe link. When a template prints those two values as they are
(``{{ patient.first_name }}``, ``{{ unsubscribe_url }}``) and never looks at them
otherwise, its output is the sandboxed render with unique markers in their place, the
markers replaced by the (escaped) values: byte for byte what a render per patient gives.
The render still runs in the sandbox on the admin's text; only templates whose every
construct is on a short list take this path, any other is rendered per patient as before.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, nodes
from markupsafe import escape

#: The per-patient values a template may print as slots: context name -> attribute (or None).
URL_NAME = "unsubscribe_url"
PATIENT_NAME, PATIENT_FIELD = "patient", "first_name"

#: Constructs whose output is a pure function of the context: no calls (``lipsum()``,
#: ``range``, macros, ``super()``), no includes or imports, no filter blocks, no captured
#: ``{% set %}`` blocks, no autoescape switches.
_ALLOWED: tuple[type[nodes.Node], ...] = (
    nodes.Template, nodes.Output, nodes.TemplateData, nodes.Extends, nodes.Block, nodes.If,
    nodes.For, nodes.With, nodes.Assign, nodes.Name, nodes.Getattr, nodes.Getitem, nodes.Const,
    nodes.Compare, nodes.Operand, nodes.Test, nodes.Filter, nodes.Keyword, nodes.CondExpr,
    nodes.And, nodes.Or, nodes.Not, nodes.Neg, nodes.Pos, nodes.Add, nodes.Sub, nodes.Mul,
    nodes.Div, nodes.FloorDiv, nodes.Mod, nodes.Pow, nodes.Concat, nodes.List, nodes.Tuple,
    nodes.Dict, nodes.Pair, nodes.Slice,
)  # fmt: skip
_UNSAFE_FILTERS = frozenset({"random"})
_SPECIAL_NAMES = frozenset({"self", "super", "caller", "varargs", "kwargs"})
#: Shared renders kept per environment; one per (template, distinct shared context).
MAX_RENDERS = 512


class _NotSlottable(Exception):
    pass


@dataclass(frozen=True)
class SlotPlan:
    """A template that can be rendered once per shared context: the names it reads."""

    names: tuple[str, ...]
    autoescape: bool


def plan_template(env: Environment, name: str) -> SlotPlan | None:
    """The template's plan, or None when it must be rendered per patient."""
    names: set[str] = set()
    try:
        _scan(env, name, names, seen=set())
    except _NotSlottable:
        return None
    auto = env.autoescape(name) if callable(env.autoescape) else bool(env.autoescape)
    return SlotPlan(tuple(sorted(names)), bool(auto))


def _scan(env: Environment, name: str, names: set[str], seen: set[str]) -> None:
    if name in seen:
        raise _NotSlottable(name)
    seen.add(name)
    assert env.loader is not None
    source, _, _ = env.loader.get_source(env, name)
    for node, parents in _walk(env.parse(source, name), ()):
        if not isinstance(node, _ALLOWED):
            raise _NotSlottable(type(node).__name__)
        if isinstance(node, nodes.Filter) and node.name in _UNSAFE_FILTERS:
            raise _NotSlottable(node.name)
        if isinstance(node, nodes.Extends):
            if not isinstance(node.template, nodes.Const):
                raise _NotSlottable("dynamic extends")
            _scan(env, str(node.template.value), names, seen)
        if isinstance(node, nodes.Name):
            _check_name(node, parents, names)


def _check_name(node: nodes.Name, parents: tuple[nodes.Node, ...], names: set[str]) -> None:
    if node.name in _SPECIAL_NAMES:
        raise _NotSlottable(node.name)
    if node.name == URL_NAME:
        if node.ctx != "load" or not isinstance(parents[-1], nodes.Output):
            raise _NotSlottable(node.name)
    elif node.name == PATIENT_NAME:
        getattr_ = parents[-1]
        if not (
            node.ctx == "load"
            and isinstance(getattr_, nodes.Getattr)
            and getattr_.attr == PATIENT_FIELD
            and isinstance(parents[-2], nodes.Output)
        ):
            raise _NotSlottable(node.name)
    elif node.ctx == "load":
        names.add(node.name)


def _walk(
    node: nodes.Node, parents: tuple[nodes.Node, ...]
) -> Iterator[tuple[nodes.Node, tuple[nodes.Node, ...]]]:
    yield node, parents
    for child in node.iter_child_nodes():
        yield from _walk(child, (*parents, node))


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()
_PLAIN = frozenset({str, int, float, bool, type(None)})


def shared_key(context: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    """The values of ``names`` as a key that tells apart any two that print differently:
    the ``repr`` of plain values (``1``, ``1.0``, ``True``, ``'1'``, ``-0.0`` all differ), or
    of dicts of plain values. None for anything else (rendered per patient)."""
    values: list[Any] = []
    for name in names:
        value = context.get(name, _MISSING)
        kind = type(value)
        if kind is dict:
            if not (
                _PLAIN.issuperset(map(type, value)) and _PLAIN.issuperset(map(type, value.values()))
            ):
                return None
        elif kind not in _PLAIN and value is not _MISSING:
            return None
        values.append(value)
    return repr(values)


class SlotRenderer:
    """Shared renders of one environment's templates, split at the patient's slots."""

    def __init__(self, env: Environment) -> None:
        self._env = env
        marker = uuid.uuid4().hex
        self._url_mark = f"slot{marker}u"
        self._name_mark = f"slot{marker}n"
        self._split = re.compile(f"({self._url_mark}|{self._name_mark})")
        self._plans: dict[str, SlotPlan | None] = {}
        self._renders: dict[tuple[str, str], list[str]] = {}

    def render(self, name: str, context: Mapping[str, Any]) -> str:
        """What ``env.get_template(name).render(context)`` returns."""
        if name not in self._plans:
            self._plans[name] = plan_template(self._env, name)
        plan = self._plans[name]
        patient = context.get(PATIENT_NAME)
        url = context.get(URL_NAME)
        first_name = patient.get(PATIENT_FIELD) if type(patient) is dict else None
        if plan is None or type(url) is not str or type(first_name) is not str:
            return self._env.get_template(name).render(context)
        values = shared_key(context, plan.names)
        if values is None:
            return self._env.get_template(name).render(context)
        key = (name, values)
        parts = self._renders.get(key)
        if parts is None:
            parts = self._shared(name, context)
            if len(self._renders) >= MAX_RENDERS:
                self._renders.clear()
            self._renders[key] = parts
        return self._fill(parts, url, first_name, plan.autoescape)

    def _shared(self, name: str, context: Mapping[str, Any]) -> list[str]:
        marked = {
            **context,
            URL_NAME: self._url_mark,
            PATIENT_NAME: {**context[PATIENT_NAME], PATIENT_FIELD: self._name_mark},
        }
        return self._split.split(self._env.get_template(name).render(marked))

    def _fill(self, parts: list[str], url: str, first_name: str, autoescape: bool) -> str:
        if autoescape:
            url, first_name = str(escape(url)), str(escape(first_name))
        values = {self._url_mark: url, self._name_mark: first_name}
        return "".join([values[p] if i % 2 else p for i, p in enumerate(parts)])
