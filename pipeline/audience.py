"""Who receives the newsletter: the local subscriber list, its CSV import and its signed
unsubscribe links."""

from __future__ import annotations

import base64
import codecs
import csv
import hashlib
import hmac
import io
import json
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

from babel import Locale
from email_validator import EmailNotValidError, validate_email

from pipeline.errors import UsageError
from pipeline.models import Recipient
from pipeline.store import Store, Subscriber


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

# Each column and the headers that name it, compared folded (see _fold): a spreadsheet's own
# spelling (`E-mail`, `Consent Source`) and French (`Courriel`, `Source du consentement`).
COLUMNS: dict[str, tuple[str, ...]] = {
    "email": ("email", "e-mail", "email address", "courriel", "adresse courriel"),
    "language": ("language", "lang", "langue"),
    "consent_source": ("consent_source", "source du consentement"),
    "consent_at": ("consent_at", "consent date", "date du consentement"),
    "name": ("name", "nom"),
    "unsubscribed_at": ("unsubscribed_at", "date de désabonnement"),
}
REQUIRED_COLUMNS = ("email", "language", "consent_source", "consent_at")
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}  # and how each is named
# How a file without a byte-order mark is tried: UTF-8 first (what Google Sheets, LibreOffice
# and Excel's "CSV UTF-8" write), then the legacy Windows code page of French-Canadian Excel.
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16", "UTF-16"),
)
_WITHOUT_BOM = (("utf-8", "UTF-8"), ("cp1252", "Windows-1252"))
_DATE = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
)
_DAY_MONTH = re.compile(r"\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}(?:\s.*)?")
_LANGUAGE_TAG = re.compile(r"([a-z]{2,3})(?:[-_][a-z0-9]{1,8})+", re.IGNORECASE)


@dataclass(slots=True)
class ImportResult:
    """What a CSV file held: the valid rows, the rejected lines, the extra columns kept, and
    how it was read (`Windows-1252, semicolon-separated`)."""

    read_as: str
    subscribers: list[Subscriber] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    extra_columns: list[str] = field(default_factory=list)


def _fold(text: str) -> str:
    """`text` without case, accents, spaces, hyphens or underscores: `Date du consentement`,
    `date-du-consentement` and `DATE_DU_CONSENTEMENT` are one header."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c) and c not in " -_\t")


_HEADERS = {_fold(alias): column for column, aliases in COLUMNS.items() for alias in aliases}


def _letter(index: int) -> str:
    """A spreadsheet's name for the column at `index` (0 → A, 26 → AA)."""
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(ord("A") + rest) + name
    return name


def _decode(path: Path, data: bytes) -> tuple[str, str]:
    """The text of `data` and the name of its encoding: by its byte-order mark, else UTF-8,
    else Windows-1252; a UsageError saying what was tried and where it failed."""
    tried = next(
        ([(codec, label)] for bom, codec, label in _BOMS if data.startswith(bom)), _WITHOUT_BOM
    )
    failures = []
    for codec, label in tried:
        try:
            text = data.decode(codec)
        except UnicodeDecodeError as exc:
            before = data[: exc.start].decode(codec, errors="replace")
            line = before.count("\n") + 1
            column = len(before) - (before.rfind("\n") + 1) + 1
            failures.append(
                f"{label} (byte 0x{data[exc.start]:02X} at line {line}, column {column})"
            )
            continue
        if "\0" in text:
            raise UsageError(
                f"{path}: holds NUL characters: UTF-16 without a byte-order mark? "
                'Save it as "CSV UTF-8" or as "Unicode text"'
            )
        return text.removeprefix("\ufeff"), label
    raise UsageError(
        f'{path}: cannot decode as {" nor as ".join(failures)}; save it as "CSV UTF-8"'
    )


def _delimiter(first_line: str) -> str:
    """The delimiter under which the header names the most known columns; on a tie, the one
    the header holds most often; comma when it holds none."""

    def score(delimiter: str) -> tuple[int, int]:
        header = next(csv.reader([first_line], delimiter=delimiter), [])
        return sum(_fold(name) in _HEADERS for name in header), first_line.count(delimiter)

    return max(DELIMITERS, key=score) if any(d in first_line for d in DELIMITERS) else ","


def _language_names(languages: tuple[str, ...]) -> dict[str, str]:
    """Every way a cell may name a configured language, folded: its code, and its name in
    each configured language and in English (from Babel: `fr`, `French`, `français`)."""
    names = {}
    for code in languages:
        locale = Locale.parse(code)
        for shown_in in dict.fromkeys((*languages, "en")):
            names[_fold(locale.get_display_name(shown_in) or code)] = code
        names[_fold(code)] = code
    return names


def _language(value: str, names: dict[str, str]) -> str:
    tag = _LANGUAGE_TAG.fullmatch(value)
    code = names.get(_fold(tag[1] if tag else value))
    if code is None:
        raise ValueError(
            f"{value!r} is not a configured language ({', '.join(sorted(set(names.values())))})"
        )
    return code


def _timestamp(value: str, tz: ZoneInfo) -> str:
    """An ISO 8601 date, or date and time (`T` or a space), in `tz` unless it has an offset;
    day/month forms are refused: `03/04/2026` is March or April depending on who wrote it."""
    if _DAY_MONTH.fullmatch(value):
        raise ValueError(
            f"{value!r} is ambiguous (day/month or month/day?): write YYYY-MM-DD, e.g. 2026-03-14"
        )
    try:
        if not _DATE.fullmatch(value):
            raise ValueError(value)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"not a date: {value!r} (write YYYY-MM-DD or YYYY-MM-DD HH:MM, e.g. 2026-03-14 09:30)"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=tz)).isoformat()


def read_csv(path: Path, languages: tuple[str, ...], tz: ZoneInfo) -> ImportResult:
    """Validate every line of a subscribers CSV as a spreadsheet writes it (delimiter and
    encoding detected, headers and languages matched loosely); bad lines are reported with
    their line and column, the file's own problems (no header, undecodable) as a UsageError."""
    try:
        text, encoding = _decode(path, path.read_bytes())
    except FileNotFoundError:
        raise UsageError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a folder, not a CSV file") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    delimiter = _delimiter(next(iter(text.splitlines()), ""))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = [name.strip() for name in next(reader, [])]
        read_as = f"{encoding}, {DELIMITERS[delimiter]}-separated"
        columns = _columns(path, header, read_as)
        result = ImportResult(read_as, extra_columns=[c for c in columns if c and c not in COLUMNS])
        names = _language_names(languages)
        seen: dict[str, int] = {}
        end = reader.line_num
        for cells in reader:
            line, end = end + 1, reader.line_num
            if not any(cell.strip() for cell in cells):
                continue  # an empty line, or an empty row of a spreadsheet (";;;")
            try:
                subscriber = _subscriber(cells, columns, names, tz)
            except _RowProblems as exc:
                result.problems.append(f"{path}:{line}: {exc}")
                continue
            key = subscriber.email.lower()
            if key in seen:
                result.problems.append(
                    f"{path}:{line}: email (column {_letter(columns.index('email'))}):"
                    f" duplicate of line {seen[key]}, ignored"
                )
                continue
            seen[key] = line
            result.subscribers.append(subscriber)
    except csv.Error as exc:
        raise UsageError(f"{path}:{reader.line_num}: cannot read as CSV: {exc}") from None
    return result


def _columns(path: Path, header: list[str], read_as: str) -> list[str]:
    """The column of each header cell: a known column's own name, else the header as written
    (an attribute), else "" (no header). Missing or repeated columns stop the import."""
    if not any(header):
        raise UsageError(f"{path}: empty file; the header row is required")
    columns = [_HEADERS.get(_fold(name), name) for name in header]
    missing = [column for column in REQUIRED_COLUMNS if column not in columns]
    if missing:
        found = ", ".join(repr(name) for name in header if name)
        raise UsageError(
            f"{path}:1: header row lacks column(s) {', '.join(missing)} (read as {read_as};"
            f' found {found}); see "Subscribers CSV" in the README for the names accepted'
        )
    letters: dict[str, list[str]] = {}
    for index, column in enumerate(columns):
        if column:
            letters.setdefault(column, []).append(_letter(index))
    repeated = [f"{c} (columns {' and '.join(ls)})" for c, ls in letters.items() if len(ls) > 1]
    if repeated:
        raise UsageError(f"{path}:1: header row repeats column(s): {', '.join(repeated)}")
    return columns


class _RowProblems(ValueError):
    """Everything wrong with one line: `column (column X): problem; …`."""


def _subscriber(
    cells: list[str], columns: list[str], names: dict[str, str], tz: ZoneInfo
) -> Subscriber:
    """The subscriber of one line, or _RowProblems listing every bad cell."""
    values: dict[str, str] = {}
    problems: list[tuple[int, str]] = []  # by column, as a person reads the line
    for index, cell in enumerate(cells):
        value = cell.strip()
        if index >= len(columns) or not columns[index]:
            if value:
                problems.append((index, f"column {_letter(index)}: {value!r} is under no header"))
            continue
        values[columns[index]] = value
    parsers: dict[str, Callable[[str], str]] = {
        "email": valid_address,
        "language": lambda value: _language(value, names),
        "consent_source": _consent_source,
        "consent_at": lambda value: _timestamp(value, tz),
        "unsubscribed_at": lambda value: _timestamp(value, tz) if value else "",
    }
    parsed: dict[str, str] = {}
    for column, parse in parsers.items():
        if column not in columns:
            continue
        try:
            parsed[column] = parse(values.get(column, ""))
        except ValueError as exc:
            index = columns.index(column)
            problems.append((index, f"{column} (column {_letter(index)}): {exc}"))
    if problems:
        raise _RowProblems("; ".join(problem for _, problem in sorted(problems)))
    extra = [c for c in columns if c and c not in COLUMNS and values.get(c)]
    return Subscriber(
        email=parsed["email"],
        lang=parsed["language"],
        consent_source=parsed["consent_source"],
        consent_at=parsed["consent_at"],
        name=values.get("name", ""),
        unsubscribed_at=parsed.get("unsubscribed_at") or None,
        attributes=json.dumps({c: values[c] for c in extra}, ensure_ascii=False),
    )


def _consent_source(value: str) -> str:
    if not value:
        raise ValueError("empty (CASL: keep how consent was given)")
    return value
