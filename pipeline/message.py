"""One recipient's complete MIME message: multipart/alternative, UTF-8, list headers."""

from __future__ import annotations

import email.policy
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr

from pipeline.models import Recipient
from pipeline.render import Rendered
from pipeline.text import one_line


@dataclass(frozen=True, slots=True)
class ListHeaders:
    """What identifies the list and lets a reader leave it in one click (RFC 2369, 8058)."""

    list_id: str
    unsubscribe_url: str
    unsubscribe_mailto: str = ""

    def as_headers(self) -> dict[str, str]:
        """The header fields, one-click unsubscribe included."""
        targets = [f"<{self.unsubscribe_url}>"]
        if self.unsubscribe_mailto:
            targets.append(f"<mailto:{self.unsubscribe_mailto}?subject=unsubscribe>")
        return {
            "List-Id": self.list_id,
            "List-Unsubscribe": ", ".join(targets),
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }


def list_id(name: str, topic: str, from_address: str) -> str:
    """`Name <topic.sender-domain>`, the List-Id of one language's list."""
    domain = parseaddr(from_address)[1].rpartition("@")[2]
    return f"{one_line(name, 80)} <{topic}.{domain}>"


def build(
    rendered: Rendered,
    *,
    sender: str,
    recipient: Recipient,
    headers: ListHeaders,
    now: datetime,
    subject_prefix: str = "",
) -> bytes:
    """The message for `recipient`, personalised, as bytes with CRLF line ends."""
    html_part, text_part = rendered.personalize({"unsubscribe_url": headers.unsubscribe_url})
    domain = parseaddr(sender)[1].rpartition("@")[2]
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = sender
    message["To"] = Address(display_name=one_line(recipient.name, 80), addr_spec=recipient.email)
    message["Subject"] = f"{subject_prefix} {rendered.subject}".strip()
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(domain=domain)
    for field, value in headers.as_headers().items():
        message[field] = value
    message.set_content(text_part, cte="quoted-printable")
    message.add_alternative(html_part, subtype="html", cte="quoted-printable")
    return bytes(message)
