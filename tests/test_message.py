"""Tests for pipeline.message: valid multipart MIME with list headers and no injection."""

from __future__ import annotations

import email
import email.policy
from dataclasses import replace
from datetime import UTC, datetime
from email.header import decode_header, make_header

import pytest

from pipeline.message import HeaderTooLong, ListOptions, MessageTemplate, list_id
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
    hostile = replace(rendered, text=text + rendered.text)
    template = MessageTemplate(hostile, "IT Buzz <buzz@news.example.com>", OPTIONS)
    raw = template.for_recipient(Recipient("a@example.com", "fr"), UNSUBSCRIBE, NOW)
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert all(len(line) <= 76 for line in body.split(b"\r\n"))
    assert b"\r" not in body.replace(b"\r\n", b"")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    decoded = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    expected = text.replace("\r\n", "\n").replace("\r", "\n")
    assert decoded.replace("\r\n", "\n").startswith(expected)


def _raw(rendered: Rendered, url: str, options: ListOptions = OPTIONS, prefix: str = "") -> bytes:
    template = MessageTemplate(rendered, "Le buzz IT <buzz@news.example.com>", options, prefix)
    name = "Marie-Ève Bélanger-Côté de la Très Longue Lignée des Tremblay du Saguenay"
    return template.for_recipient(Recipient("me@example.com", "fr", name), url, NOW)


def test_long_headers_are_folded_at_78_and_decode_back() -> None:
    """A 150-character subject, a long name, List-Id and List-Unsubscribe with long URLs:
    every header line is at most 78 characters (List-Unsubscribe folded between its URLs),
    and each header decodes back to its value."""
    title = "Sécurité infonuagique : " + "les nouveautés de la semaine " * 6
    rendered = _rendered(title)
    url = "https://example.com/unsubscribe?token=" + "a" * 15
    raw = _raw(rendered, url)
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 78
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert len(rendered.subject) > 78
    assert msg["Subject"] == rendered.subject
    # RFC 2047 decoding (email.header): the modern parser mis-joins an address's display
    # name split inside a word across two encoded words, which RFC 2047 allows
    to = str(make_header(decode_header(email.message_from_bytes(raw)["To"])))
    assert to == (
        "Marie-Ève Bélanger-Côté de la Très Longue Lignée des Tremblay du Saguenay <me@example.com>"
    )
    assert msg["List-Unsubscribe"] == (
        f"<{url}>, <mailto:unsubscribe@news.example.com?subject=unsubscribe>"
    )


def test_a_url_longer_than_a_line_stays_whole_within_the_hard_limit() -> None:
    """A 500-character unsubscribe URL is kept whole on its own line (≤ 998); one that cannot
    fit any line is refused with HeaderTooLong, for that recipient only."""
    long_url = "https://example.com/unsubscribe?token=" + "b" * 460
    raw = _raw(_rendered(), long_url)
    lines = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert f"List-Unsubscribe: <{long_url}>,".encode() in lines
    assert max(len(line) for line in lines) <= 998
    with pytest.raises(HeaderTooLong):
        _raw(_rendered(), "https://example.com/u?t=" + "c" * 1000)


def test_feedback_id_names_edition_language_mail_type_and_sender() -> None:
    """Gmail's Feedback-ID: `<edition>:<lang>:newsletter|proof:<sender id>`, four fields, the
    same for every recipient; none without a sender id."""
    options = replace(OPTIONS, feedback_sender="buzz-news")
    rendered = _rendered()
    sent = email.message_from_bytes(_raw(rendered, UNSUBSCRIBE, options))
    proof = email.message_from_bytes(_raw(rendered, UNSUBSCRIBE, options, "[Épreuve]"))
    assert sent["Feedback-ID"] == "e:fr:newsletter:buzz-news"
    assert proof["Feedback-ID"] == "e:fr:proof:buzz-news"
    assert email.message_from_bytes(_raw(rendered, UNSUBSCRIBE))["Feedback-ID"] is None
