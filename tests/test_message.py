"""Tests for pipeline.message: valid multipart MIME with list headers and no injection."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

from pipeline.message import ListHeaders, build, list_id
from pipeline.models import Edition, Recipient, Story
from pipeline.render import Sender, render
from tests.helpers import make_post

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SENDER = Sender("Example Inc.", "123 Example St", "https://example.com/contact")


def _message(name: str = "Jean-François Côté") -> email.message.EmailMessage:
    post = make_post("fr1", "fr", "Café & sécurité : quoi de neuf ?")
    rendered = render(
        Edition("e", NOW, ("fr",), (Story({"fr": post}),)), "fr", "Le buzz IT", SENDER
    )
    headers = ListHeaders(
        list_id=list_id("Le buzz IT", "it-buzz-fr", "Le buzz IT <buzz@news.example.com>"),
        unsubscribe_url="https://example.com/unsubscribe?token=abc",
        unsubscribe_mailto="unsubscribe@news.example.com",
    )
    raw = build(
        rendered,
        sender="Le buzz IT <buzz@news.example.com>",
        recipient=Recipient("jf@example.com", "fr", name),
        headers=headers,
        now=NOW,
    )
    assert b"\r\n" in raw
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def test_message_is_multipart_alternative_with_text_and_html() -> None:
    """A text/plain part then a text/html part, both UTF-8."""
    msg = _message()
    assert msg.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in msg.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert all(part.get_content_charset() == "utf-8" for part in msg.iter_parts())
    assert "https://example.com/unsubscribe?token=abc" in msg.get_body(("plain",)).get_content()


def test_one_click_unsubscribe_and_list_id_headers() -> None:
    """RFC 8058 one-click, a mailto fallback and a List-Id on the sender's domain."""
    msg = _message()
    assert msg["List-Unsubscribe"] == (
        "<https://example.com/unsubscribe?token=abc>, "
        "<mailto:unsubscribe@news.example.com?subject=unsubscribe>"
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["List-Id"] == "Le buzz IT <it-buzz-fr.news.example.com>"
    assert msg["Message-ID"].endswith("@news.example.com>")


def test_subject_and_names_survive_encoding() -> None:
    """Accents and non-breaking spaces decode back exactly."""
    msg = _message()
    assert msg["Subject"] == "Le buzz IT\u00a0: Café & sécurité : quoi de neuf ?"
    assert msg["To"] == "Jean-François Côté <jf@example.com>"


def test_a_name_with_line_breaks_cannot_add_headers() -> None:
    """CR/LF in a subscriber's name never becomes a header."""
    msg = _message("Eve\r\nBcc: victim@example.com")
    assert msg["Bcc"] is None
    assert len(msg.get_all("To", [])) == 1
