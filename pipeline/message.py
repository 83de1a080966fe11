"""Recipients' complete MIME messages: multipart/alternative, UTF-8, quoted-printable, with the
list headers (List-Id, one-click List-Unsubscribe).

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
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr

from pipeline.models import Recipient
from pipeline.render import Rendered
from pipeline.text import one_line

_HOLE_TEXT = b"\x00text\x00"  # never in quoted-printable output, which is printable ASCII
_HOLE_HTML = b"\x00html\x00"
_QP_LINE = 76


@dataclass(frozen=True, slots=True)
class ListOptions:
    """Who the list is, and where a reader leaves it (RFC 2369, RFC 8058)."""

    list_id: str
    unsubscribe_mailto: str = ""


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
        from a feed can become a placeholder SES would fill in."""
        self.domain = parseaddr(sender)[1].rpartition("@")[2]
        self.mailto = options.unsubscribe_mailto
        self.one_click = not provider_unsubscribes
        self.boundary = f"buzz-{secrets.token_hex(12)}"
        fixed = EmailMessage(policy=email.policy.SMTP)
        fixed["From"] = sender
        fixed["Subject"] = f"{subject_prefix} {rendered.subject}".strip()
        fixed["MIME-Version"] = "1.0"
        fixed["Content-Type"] = f'multipart/alternative; boundary="{self.boundary}"'
        fixed["List-Id"] = options.list_id
        if self.one_click:
            fixed["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        self.headers = fixed.as_bytes().split(b"\r\n\r\n", 1)[0] + b"\r\n"
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
        to = formataddr((one_line(recipient.name, 80), recipient.email), charset="utf-8")
        personal = (
            f"To: {to}\r\nDate: {format_datetime(now)}\r\n"
            f"Message-ID: <{uuid.uuid4().hex}@{self.domain}>\r\n"
        )
        if self.one_click:
            targets = f"<{unsubscribe_url}>"
            if self.mailto:
                targets += f", <mailto:{self.mailto}?subject=unsubscribe>"
            personal += f"List-Unsubscribe: {targets}\r\n"
        return personal.encode() + self.headers + b"\r\n" + self.body_for(unsubscribe_url)

    def body_for(self, unsubscribe_url: str) -> bytes:
        """The encoded body (both parts) with the recipient's unsubscribe link filled in."""
        body = self.body.replace(_HOLE_TEXT, _qp_value(unsubscribe_url))
        return body.replace(_HOLE_HTML, _qp_value(html.escape(unsubscribe_url, quote=True)))


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
