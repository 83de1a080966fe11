"""Tests for pipeline.message: valid multipart MIME with list headers and no injection."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

import pytest

from pipeline.message import ListOptions, MessageTemplate, list_id
from pipeline.models import Edition, Recipient, Story
from pipeline.render import Rendered, Sender, render
from tests.helpers import make_post

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SENDER = Sender("Example Inc.", "123 Example St", "https://example.com/contact")
OPTIONS = ListOptions(
    list_id=list_id("Le buzz IT", "it-buzz-fr", "Le buzz IT <buzz@news.example.com>"),
    unsubscribe_mailto="unsubscribe@news.example.com",
)
UNSUBSCRIBE = "https://example.com/unsubscribe?token=abc&x=1=2"


def _rendered(title: str = "Café & sécurité : quoi de neuf ?") -> Rendered:
    post = make_post("fr1", "fr", title, summary="Un résumé " * 40)
    return render(Edition("e", NOW, ("fr",), (Story({"fr": post}),)), "fr", "Le buzz IT", SENDER)


def _message(
    name: str = "Jean-François Côté", url: str = UNSUBSCRIBE
) -> email.message.EmailMessage:
    template = MessageTemplate(_rendered(), "Le buzz IT <buzz@news.example.com>", OPTIONS)
    raw = template.for_recipient(Recipient("jf@example.com", "fr", name), url, NOW)
    head, body = raw.split(b"\r\n\r\n", 1)
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    assert all(len(line) <= 76 for line in body.split(b"\r\n")), "quoted-printable lines"
    assert b"\n" not in raw.replace(b"\r\n", b"")
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def test_message_is_multipart_alternative_with_text_and_html() -> None:
    """A text/plain part then a text/html part, both UTF-8, both decoding to the rendering."""
    msg = _message()
    assert msg.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in msg.iter_parts()] == ["text/plain", "text/html"]
    assert all(part.get_content_charset() == "utf-8" for part in msg.iter_parts())
    html_part, text_part = _rendered().personalize({"unsubscribe_url": UNSUBSCRIBE})
    assert msg.get_body(("plain",)).get_content().replace("\r\n", "\n") == text_part  # type: ignore[union-attr]
    assert msg.get_body(("html",)).get_content().replace("\r\n", "\n") == html_part  # type: ignore[union-attr]


@pytest.mark.parametrize("length", [10, 73, 74, 75, 76, 200])
def test_unsubscribe_links_of_any_length_survive_the_encoding(length: int) -> None:
    """Soft line breaks never cut an escape: the link decodes back exactly."""
    url = "https://example.com/u?t=" + ("é=" * length)[:length]
    msg = _message(url=url)
    assert url in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_one_click_unsubscribe_and_list_id_headers() -> None:
    """RFC 8058 one-click, a mailto fallback and a List-Id on the sender's domain."""
    msg = _message()
    assert msg["List-Unsubscribe"] == (
        f"<{UNSUBSCRIBE}>, <mailto:unsubscribe@news.example.com?subject=unsubscribe>"
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["List-Id"] == "Le buzz IT <it-buzz-fr.news.example.com>"
    assert msg["Message-ID"].endswith("@news.example.com>")
    assert _message()["Message-ID"] != msg["Message-ID"]


def test_subject_and_names_survive_encoding() -> None:
    """Accents and (French typography's) no-break spaces decode back exactly."""
    msg = _message()
    assert msg["Subject"] == "Le buzz IT\u00a0: Café & sécurité\u00a0: quoi de neuf\u00a0?"
    assert msg["To"] == "Jean-François Côté <jf@example.com>"


def test_a_name_with_line_breaks_cannot_add_headers() -> None:
    """CR/LF in a subscriber's name never becomes a header."""
    msg = _message("Eve\r\nBcc: victim@example.com")
    assert msg["Bcc"] is None
    assert len(msg.get_all("To", [])) == 1


@pytest.mark.parametrize(
    "text",
    [
        "x" * 74 + " \n" + "y" * 200,
        "line ending with equals=\nnext",
        "=" * 80,
        "crlf\r\ninside\rcontent",
        "é" * 50 + " trailing   \n",
    ],
)
def test_hostile_text_encodes_to_valid_quoted_printable(text: str) -> None:
    """Lines of at most 76 characters, no bare CR, and the decoded text is the text."""
    rendered = _rendered()
    hostile = Rendered(rendered.lang, rendered.subject, rendered.preheader, rendered.html,
                       text + rendered.text, rendered.placeholders)  # fmt: skip
    template = MessageTemplate(hostile, "IT Buzz <buzz@news.example.com>", OPTIONS)
    raw = template.for_recipient(Recipient("a@example.com", "fr"), UNSUBSCRIBE, NOW)
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert all(len(line) <= 76 for line in body.split(b"\r\n"))
    assert b"\r" not in body.replace(b"\r\n", b"")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    decoded = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    expected = text.replace("\r\n", "\n").replace("\r", "\n")
    assert decoded.replace("\r\n", "\n").startswith(expected)
