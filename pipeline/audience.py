"""Who receives the newsletter: the local subscriber list, its CSV import and its signed
unsubscribe links."""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

from email_validator import EmailNotValidError, validate_email

from pipeline.errors import UsageError
from pipeline.models import Recipient
from pipeline.store import Store, Subscriber

REQUIRED_COLUMNS = ("email", "language", "consent_source", "consent_at")
KNOWN_COLUMNS = (*REQUIRED_COLUMNS, "name", "unsubscribed_at")


class Audience(Protocol):
    """Who receives the newsletter: what the send loop and `buzz subscribers` need."""

    provider_unsubscribes: bool  # True: the provider adds the one-click headers and the link

    def recipients(self, lang: str) -> Iterator[Recipient]:
        """Everyone subscribed to `lang`, now (streamed)."""
        ...

    def is_subscribed(self, recipient: Recipient) -> bool:
        """Whether `recipient` is still subscribed (checked again just before sending)."""
        ...

    def unsubscribe_url(self, recipient: Recipient) -> str:
        """The one-click unsubscribe link for `recipient`."""
        ...

    def add(self, subscribers: list[Subscriber], now: datetime) -> int:
        """Add or update subscribers (never undoing an unsubscribe); how many were new."""
        ...

    def remove(self, email: str, now: datetime) -> bool:
        """Unsubscribe `email`; False when it is not a subscriber."""
        ...

    def members(self, lang: str | None) -> list[Subscriber]:
        """Every subscriber (unsubscribed included), optionally of one language."""
        ...


class Signer:
    """Signed unsubscribe tokens: the address, and an HMAC-SHA256 of it under a secret."""

    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def _mac(self, email: str) -> str:
        digest = hmac.new(self._key, f"unsubscribe:{email.lower()}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(digest.digest()[:16]).decode().rstrip("=")

    def token(self, email: str) -> str:
        """A token that names `email` and proves buzz issued it."""
        encoded = base64.urlsafe_b64encode(email.encode()).decode().rstrip("=")
        return f"{encoded}.{self._mac(email)}"

    def verify(self, token: str) -> str | None:
        """The address a genuine token names, else None."""
        encoded, _, mac = token.partition(".")
        try:
            email = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        return email if hmac.compare_digest(mac, self._mac(email)) else None


class LocalAudience:
    """Subscribers kept in the state store; unsubscribe links signed by buzz."""

    provider_unsubscribes = False

    def __init__(self, store: Store, url_template: str, signer: Callable[[], Signer]) -> None:
        """`signer` is called the first time a link is signed: managing subscribers needs no
        signing secret."""
        self.store = store
        self.url_template = url_template
        self._signer = signer

    @cached_property
    def signer(self) -> Signer:
        """The signer of unsubscribe tokens."""
        return self._signer()

    def recipients(self, lang: str) -> Iterator[Recipient]:
        """Active subscribers of `lang`, by address, streamed from the store."""
        return self.store.active_subscribers(lang)

    def is_subscribed(self, recipient: Recipient) -> bool:
        """True unless the address has unsubscribed (or vanished) since the ledger was made."""
        sub = self.store.subscriber(recipient.email)
        return sub is not None and sub.unsubscribed_at is None

    def unsubscribe_url(self, recipient: Recipient) -> str:
        """The configured unsubscribe URL with this recipient's signed token."""
        return self.url_template.replace("{token}", self.signer.token(recipient.email))

    def add(self, subscribers: list[Subscriber], now: datetime) -> int:
        """Insert or update in the state store."""
        return self.store.upsert_subscribers(subscribers, now)

    def remove(self, email: str, now: datetime) -> bool:
        """Record the unsubscribe in the state store."""
        return self.store.unsubscribe(email, now)

    def members(self, lang: str | None) -> list[Subscriber]:
        """From the state store."""
        return self.store.subscribers(lang)


def valid_address(text: str) -> str:
    """A deliverable-looking address in ASCII form (an international domain in IDNA), or
    ValueError saying why not. Mailbox names in non-ASCII need SMTPUTF8, which few paths
    support end to end; they are refused rather than lost at send time."""
    try:
        checked = validate_email(text.strip(), check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise ValueError(f"{text!r} is not a valid address: {exc}") from None
    return checked.ascii_email or checked.normalized


# CSV import -----------------------------------------------------------------------------------


@dataclass(slots=True)
class ImportResult:
    """What a CSV file held: the valid rows, the rejected lines, the extra columns kept."""

    subscribers: list[Subscriber] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    extra_columns: list[str] = field(default_factory=list)


def _timestamp(value: str, tz: ZoneInfo) -> str:
    moment = datetime.fromisoformat(value.strip())
    return (moment if moment.tzinfo else moment.replace(tzinfo=tz)).isoformat()


def read_csv(path: Path, languages: tuple[str, ...], tz: ZoneInfo) -> ImportResult:
    """Validate every line of a subscribers CSV; bad lines are reported with their numbers."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            header = [name.strip() for name in reader.fieldnames or []]
            reader.fieldnames = header
            rows = [(reader.line_num, row) for row in reader]
    except FileNotFoundError:
        raise UsageError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a folder, not a CSV file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"{path}: cannot read as UTF-8 CSV: {exc}") from None
    if not header:
        raise UsageError(f"{path}: empty file; the header row is required")
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    if missing:
        raise UsageError(f"{path}: header row lacks column(s): {', '.join(missing)}")
    repeated = sorted({column for column in header if header.count(column) > 1})
    if repeated:
        raise UsageError(f"{path}: header row repeats column(s): {', '.join(repeated)}")
    result = ImportResult(extra_columns=[c for c in header if c not in KNOWN_COLUMNS and c])
    seen: dict[str, int] = {}
    for line, row in rows:
        try:
            subscriber = _subscriber(row, languages, tz, result.extra_columns)
        except ValueError as exc:
            result.problems.append(f"{path}:{line}: {exc}")
            continue
        key = subscriber.email.lower()
        if key in seen:
            result.problems.append(f"{path}:{line}: duplicate of line {seen[key]}, ignored")
            continue
        seen[key] = line
        result.subscribers.append(subscriber)
    return result


def _subscriber(
    row: dict[str, str | None], languages: tuple[str, ...], tz: ZoneInfo, extra: list[str]
) -> Subscriber:
    if None in row:
        raise ValueError("more fields than columns in the header")
    cells = {key: (value or "").strip() for key, value in row.items()}
    try:
        email = valid_address(cells["email"])
    except ValueError as exc:
        raise ValueError(f"email {exc}") from None
    if cells["language"] not in languages:
        raise ValueError(f"language {cells['language']!r} is not one of {', '.join(languages)}")
    if not cells["consent_source"]:
        raise ValueError("consent_source is empty (CASL: keep how consent was given)")
    try:
        consent_at = _timestamp(cells["consent_at"], tz)
        unsubscribed_at = (
            _timestamp(cells["unsubscribed_at"], tz) if cells.get("unsubscribed_at") else None
        )
    except ValueError:
        raise ValueError("consent_at and unsubscribed_at must be ISO 8601 dates") from None
    return Subscriber(
        email=email,
        lang=cells["language"],
        consent_source=cells["consent_source"],
        consent_at=consent_at,
        name=cells.get("name", ""),
        unsubscribed_at=unsubscribed_at,
        attributes=json.dumps({c: cells[c] for c in extra if cells.get(c)}, ensure_ascii=False),
    )
