"""Clinic-level answers (crisis, HELP, confirmations) render for every channel and fit SMS."""

from __future__ import annotations

import pytest

from campaigns.enums import Channel
from campaigns.rendering import SYSTEM_MESSAGES, TemplateLibrary
from campaigns.segments import count_segments, is_gsm7
from tests.conftest import REPO

CONTEXT = {
    "patient": {"first_name": "Bartholomew"},
    "clinic": {
        "name": "Riverside Pain Recovery and Rehabilitation Clinic",
        "phone": "+1 555 010 0199",
    },
    "unsubscribe_url": "https://clinic.example/unsubscribe/" + "t" * 80,
}


@pytest.mark.parametrize("name", SYSTEM_MESSAGES)
def test_system_sms_is_gsm7_within_two_segments_for_a_long_name(name: str) -> None:
    message = TemplateLibrary(REPO / "templates").render_system(name, Channel.SMS, CONTEXT)
    assert is_gsm7(message.body_text)
    assert count_segments(message.body_text).segments <= 2


@pytest.mark.parametrize("name", SYSTEM_MESSAGES)
def test_system_email_has_subject_text_and_html(name: str) -> None:
    message = TemplateLibrary(REPO / "templates").render_system(name, Channel.EMAIL, CONTEXT)
    assert message.subject and "\n" not in message.subject
    assert message.body_html and "<html" in message.body_html
    assert "Bartholomew" in message.body_text
    assert "Riverside Pain Recovery" in message.body_text


def test_crisis_text_always_gives_988_and_emergency_number() -> None:
    library = TemplateLibrary(REPO / "templates")
    for channel in Channel:
        body = library.render_system("crisis", channel, CONTEXT).body_text
        assert "988" in body and "911" in body
