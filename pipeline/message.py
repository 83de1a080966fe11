"""Recipients' complete MIME messages: multipart/alternative, UTF-8, quoted-printable, with the
list headers (List-Id, one-click List-Unsubscribe) and Gmail's Feedback-ID; every header folded
at 78 characters where it can be (RFC 5322), and never longer than 998.

A `MessageTemplate` encodes one language's message once, leaving holes where the recipient's
unsubscribe link goes; each recipient's message is then a few byte substitutions — tens of
microseconds, not the milliseconds of building a message from scratch.
"""

from __future__ import annotations

import binascii
import email.policy
import html
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr

from pipeline.models import Recipient
from pipeline.render import Rendered
from pipeline.text import one_line

_HOLE_TEXT = b"\x00text\x00"  # never in quoted-printable output, which is printable ASCII
_HOLE_HTML = b"\x00html\x00"
_QP_LINE = 76
_HEADER_LINE = 998  # RFC 5322's hard limit; folding aims at 78
_POLICY = email.policy.SMTP  # folds at 78, CRLF line ends


class HeaderTooLong(ValueError):
    """A header holds a word (a URL) too long for any line of a message (998 characters)."""


@dataclass(frozen=True, slots=True)
class ListOptions:
    """Who the list is, and where a reader leaves it (RFC 2369, RFC 8058)."""

    list_id: str
    unsubscribe_mailto: str = ""
    feedback_sender: str = ""  # Gmail's SenderId (`sender.feedback_id`); empty: no Feedback-ID


def list_id(name: str, topic: str, from_address: str) -> str:
    """`Name <topic.sender-domain>`, the List-Id of one language's list."""
    domain = parseaddr(from_address)[1].rpartition("@")[2]
    return f"{one_line(name, 80)} <{topic}.{domain}>"


class MessageTemplate:
    """One language of an edition as a message, encoded once, personalised per recipient."""

    def __init__(
        self,
        rendered: Rendered,
        sender: str,
        options: ListOptions,
        subject_prefix: str = "",
        *,
        provider_unsubscribes: bool = False,
    ) -> None:
        """With `provider_unsubscribes` (an SES contact list), SES adds the one-click headers
        and replaces its placeholder in the body: buzz adds neither, and makes sure no `{{`
        from a feed can become a placeholder SES would fill in. A `subject_prefix` marks a
        proof, and its Feedback-ID says so."""
        self.domain = parseaddr(sender)[1].rpartition("@")[2]
        self.mailto = options.unsubscribe_mailto
        self.one_click = not provider_unsubscribes
        self.boundary = f"buzz-{secrets.token_hex(12)}"
        fixed = EmailMessage(policy=_POLICY)
        fixed["From"] = sender
        fixed["MIME-Version"] = "1.0"
        fixed["Content-Type"] = f'multipart/alternative; boundary="{self.boundary}"'
        if options.feedback_sender:
            fixed["Feedback-ID"] = feedback_id(
                rendered, "proof" if subject_prefix else "newsletter", options.feedback_sender
            )
        if self.one_click:
            fixed["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        self.headers = (
            fixed.as_bytes().split(b"\r\n\r\n", 1)[0] + b"\r\n"
            + _fold_text("Subject", f"{subject_prefix} {rendered.subject}".strip()).encode()
            + _fold_text("List-Id", options.list_id).encode()
        )  # fmt: skip
        marker = rendered.placeholders["unsubscribe_url"]
        self.body = b"".join(
            [
                self._part("plain", rendered.text, marker, _HOLE_TEXT),
                self._part("html", rendered.html, marker, _HOLE_HTML),
                f"--{self.boundary}--\r\n".encode(),
            ]
        )

    def _part(self, subtype: str, content: str, marker: str, hole: bytes) -> bytes:
        head = (
            f'--{self.boundary}\r\nContent-Type: text/{subtype}; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        ).encode()
        content = content.replace("\r\n", "\n").replace("\r", "\n")
        if not self.one_click:
            content = content.replace("{{", "{\u200b{")  # zero-width space: no SES placeholder
        segments = [_qp(segment.encode()) for segment in content.split(marker)]
        return head + (b"=\r\n" + hole + b"=\r\n").join(segments) + b"\r\n"

    def for_recipient(self, recipient: Recipient, unsubscribe_url: str, now: datetime) -> bytes:
        """The complete message for `recipient`, as bytes with CRLF line ends."""
        personal = (
            _fold_mailbox("To", one_line(recipient.name, 80), recipient.email)
            + f"Date: {format_datetime(now)}\r\n"
            f"Message-ID: <{uuid.uuid4().hex}@{self.domain}>\r\n"
        )
        if self.one_click:
            targets = [f"<{unsubscribe_url}>"]
            if self.mailto:
                targets.append(f"<mailto:{self.mailto}?subject=unsubscribe>")
            personal += _fold_list("List-Unsubscribe", targets)
        return personal.encode() + self.headers + b"\r\n" + self.body_for(unsubscribe_url)

    def body_for(self, unsubscribe_url: str) -> bytes:
        """The encoded body (both parts) with the recipient's unsubscribe link filled in."""
        body = self.body.replace(_HOLE_TEXT, _qp_value(unsubscribe_url))
        return body.replace(_HOLE_HTML, _qp_value(html.escape(unsubscribe_url, quote=True)))


def feedback_id(rendered: Rendered, mail_type: str, sender_id: str) -> str:
    """Gmail's `Feedback-ID: a:b:c:SenderId`: the edition (the campaign), its language, the
    mail type (`newsletter` or `proof`), then the stable sender id; no value of a recipient."""
    return f"{rendered.edition_id}:{rendered.lang}:{mail_type}:{sender_id}"


def _fold_text(name: str, value: str) -> str:
    """A text header folded at 78 characters: ASCII at its spaces; other text as RFC 2047
    encoded words that hold their own spaces (the email package's folding can drop the space
    between a plain word and the encoded word after it: "les nouveautés" → "lesnouveautés")."""
    if value.isascii():
        return str(_POLICY.fold(name, value))
    return f"{name}: {Header(value, 'utf-8', 78, name).encode(linesep=chr(13) + chr(10))}\r\n"


def _fold_mailbox(name: str, display: str, address: str) -> str:
    """`Display Name <address>` folded at 78: a non-ASCII name as encoded words of its own
    (see `_fold_text`), the address never cut."""
    if display.isascii():
        return str(_POLICY.fold(name, formataddr((display, address))))
    words = Header(display, "utf-8", 78, name).encode(linesep="\r\n")
    last = words.rpartition("\r\n")[2] if "\r\n" in words else f"{name}: {words}"
    gap = " " if len(last) + len(address) + 3 <= 78 else "\r\n "
    return f"{name}: {words}{gap}<{address}>\r\n"


def _fold_list(name: str, items: list[str]) -> str:
    """`name: item, item` with a fold after each comma when a line would pass 78 characters
    (a URL is never cut: whitespace inside its angle brackets is not allowed)."""
    lines = [f"{name}: {items[0]}"]
    for item in items[1:]:
        if len(lines[-1]) + len(item) + 2 <= 78:
            lines[-1] += f", {item}"
        else:
            lines[-1] += ","
            lines.append(f" {item}")
    if any(len(line) > _HEADER_LINE for line in lines):
        raise HeaderTooLong(f"{name}: a URL longer than {_HEADER_LINE - 20} characters")
    return "\r\n".join(lines) + "\r\n"


def _qp(data: bytes) -> bytes:
    """Quoted-printable with CRLF line ends (binascii: C speed), every line at most 76
    characters and the last at most 75, so that a soft break may follow it."""
    lines = binascii.b2a_qp(data, istext=True).split(b"\n")
    fitted: list[bytes] = []
    for number, line in enumerate(lines):
        limit = _QP_LINE - 1 if number == len(lines) - 1 else _QP_LINE
        while len(line) > limit:
            cut = limit - 1
            escape = line.rfind(b"=", cut - 2, cut)  # never split an "=XX" escape
            cut = escape if escape > 0 else cut
            fitted.append(line[:cut] + b"=")
            line = line[cut:]
        fitted.append(line)
    return b"\r\n".join(fitted)


def _qp_value(value: str) -> bytes:
    """A value quoted-printable on lines of its own, never splitting an escape."""
    tokens = [
        f"={byte:02X}".encode() if byte == 61 or not 32 < byte < 127 else bytes([byte])
        for byte in value.encode()
    ]
    lines, line = [], b""
    for token in tokens:
        if len(line) + len(token) > _QP_LINE - 1:  # room for the soft break's "="
            lines.append(line)
            line = b""
        line += token
    lines.append(line)
    return b"=\r\n".join(lines)
