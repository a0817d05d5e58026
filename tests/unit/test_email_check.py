"""``email_check`` answers exactly as email_validator does with its own domain check and
its own split of an address at the @-sign."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns import email_check

ADDRESSES = [
    "pat@example.org",
    "Pat.Smith+pain@Example.ORG",
    "pat@EXAMPLE.org",
    "pat@mail.example.co.uk",
    "pat@münchen.de",
    "pat@xn--mnchen-3ya.de",
    "pat@MÜNCHEN.DE",
    "用户@例子.广告",
    "pat@example.org.",
    "pat@localhost",
    "pat@test",
    "pat@example.test",
    "pat@example",
    "pat@-example.org",
    "pat@example-.org",
    "pat@exa_mple.org",
    "pat@exa mple.org",
    "pat@example..org",
    "pat@.example.org",
    "pat@123.456",
    "pat@[127.0.0.1]",
    "pat@xn--zz.org",
    "pat@" + "a" * 64 + ".org",
    "pat@" + ".".join(["abcdefghij"] * 25) + ".org",
    '"quoted local"@example.org',
    "pat@@example.org",
    "pat",
    "pat@",
    "@example.org",
    "pat@ex\u200bample.org",
    "pat@ｅｘａｍｐｌｅ.org",
]


def library_check() -> AbstractContextManager[Any]:
    """email_validator with its own domain check and split, for the expected answers."""
    return patch.multiple(email_check._CALLER, **{
        email_check._CHECK_NAME: email_check._library_check,
        email_check._SPLIT_NAME: email_check._library_split,
    })  # fmt: skip


def answer(address: str) -> str:
    try:
        return "ok " + email_check.normalized(address)
    except email_check.EmailNotValidError as exc:
        return f"{type(exc).__name__}: {exc}"


def expected(address: str) -> str:
    with library_check():
        return answer(address)


def test_the_remembering_check_and_the_quick_split_are_what_email_validator_calls() -> None:
    # Fails when an email_validator upgrade renames its internals: the addresses would
    # still be checked (by the library's own check), only bulk enrolment would be slower.
    assert email_check.installed()


@pytest.mark.parametrize("address", ADDRESSES)
def test_same_normalised_form_or_error_as_the_library(address: str) -> None:
    want = expected(address)
    assert answer(address) == want
    assert answer(address) == want  # the second answer comes from the remembered check


def test_a_bad_domain_is_refused_every_time() -> None:
    for _ in range(3):
        with pytest.raises(email_check.EmailNotValidError, match="after the @-sign"):
            email_check.normalized("pat@exa_mple.org")


def test_one_answer_cannot_change_the_next() -> None:
    first = email_check._domain_check("example.org")
    first["domain"] = "evil.example"
    assert email_check.normalized("pat@example.org") == "pat@example.org"


_LABEL = st.text(alphabet="abcXYZ09-_.ü\u200b@ ", min_size=0, max_size=12)


@settings(max_examples=300, deadline=None)
@given(local=st.text(alphabet='ab.+"', min_size=0, max_size=6), domain=_LABEL)
def test_any_address_answers_as_the_library_does(local: str, domain: str) -> None:
    address = f"{local}@{domain}"
    assert answer(address) == expected(address)


SPLITS = [
    *ADDRESSES,
    "Pat Smith <pat@example.org>",
    '"Pat Smith" <pat@example.org>',
    "<pat@example.org>",
    "pat@example.org>",
    "pat@exa<mple.org",
    '"pat@home"@example.org',
    'pat"@example.org',
    "pat\\@x@example.org",
    "pat@x@example.org",
    "pat(comment)@example.org",
    " pat@example.org ",
    "pat@",
    "@",
    "",
    "pat\u0301@example.org",
    "pat@\u0301example.org",
    "pat\ufe6bexample.org",
    "pat@ex\u00e4mple.org",
]


def split(split_email: object, address: str) -> object:
    try:
        return split_email(address)  # type: ignore[operator]
    except email_check.EmailNotValidError as exc:
        return f"{type(exc).__name__}: {exc}"


@pytest.mark.parametrize("address", SPLITS)
def test_the_quick_split_answers_as_the_library_does(address: str) -> None:
    assert split(email_check._split, address) == split(email_check._library_split, address)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet='ab.@"<>\\ ()\u00e9\u0301\ufe6b', max_size=14))
def test_any_text_splits_as_the_library_splits_it(address: str) -> None:
    assert split(email_check._split, address) == split(email_check._library_split, address)
