"""`buzz.toml` → a typed, validated `Settings`; every problem names the file and the key."""

from __future__ import annotations

import os
import re
import tomllib
from email.headerregistry import Address
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from pydantic_core import ErrorDetails

from pipeline import patterns
from pipeline.errors import ConfigError

SUPPORTED_LANGUAGES = ("en", "fr")
Language = Literal["en", "fr"]
_SES_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DEFAULT_CONFIG = "buzz.toml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)


def _http_url(value: str) -> str:
    if urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc:
        raise ValueError(f"must be an http(s) URL, got {value!r}")
    return value


def _one_line(value: str) -> str:
    if any(ord(c) < 0x20 for c in value):
        raise ValueError("must be one line of text (no line breaks or control characters)")
    return value


def _ses_name(value: str) -> str:
    if not _SES_NAME.match(value):
        raise ValueError(f"{value!r}: use 1 to 64 letters, digits, '-' or '_'")
    return value


def _address(value: str) -> str:
    if value and not _ADDRESS.match(value):
        raise ValueError(f"must be an address like user@example.com, got {value!r}")
    return value


OneLine = Annotated[str, Field(min_length=1), AfterValidator(_one_line)]
SesName = Annotated[str, AfterValidator(_ses_name)]
_ADDRESS = re.compile(r"^[^@\s<>\"(),;:]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")


def _mailbox(value: str) -> str:
    name, addr = parseaddr(value)
    if "@" not in addr or any(c in value for c in "\r\n"):
        raise ValueError(f"must be an address like 'Name <user@example.com>', got {value!r}")
    return str(Address(display_name=name, addr_spec=addr))


class NewsletterSection(_Section):
    languages: Annotated[list[str], Field(min_length=1)] = ["en", "fr"]
    timezone: str = "America/Toronto"
    output_dir: str = "var/out"
    state: str = "var/buzz.sqlite"

    @field_validator("languages")
    @classmethod
    def _known_languages(cls, value: list[str]) -> list[str]:
        unknown = [lang for lang in value if lang not in SUPPORTED_LANGUAGES]
        if unknown:
            supported = ", ".join(SUPPORTED_LANGUAGES)
            raise ValueError(f"unknown language {', '.join(unknown)} (supported: {supported})")
        if len(set(value)) != len(value):
            raise ValueError("a language is listed twice")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


class LanguageSection(_Section):
    name: OneLine
    feeds: Annotated[list[str], Field(min_length=1)]
    from_: Annotated[str, Field(alias="from")]
    subject: Annotated[patterns.Subject, AfterValidator(_one_line)] = ""
    preheader: Annotated[patterns.Preheader, AfterValidator(_one_line)] = ""

    @field_validator("from_")
    @classmethod
    def _valid_from(cls, value: str) -> str:
        return _mailbox(value)

    @field_validator("feeds")
    @classmethod
    def _feed_locations(cls, value: list[str]) -> list[str]:
        for feed in value:
            scheme = urlsplit(feed).scheme
            if scheme and len(scheme) > 1 and scheme not in ("http", "https", "file"):
                raise ValueError(f"feed {feed!r}: only http(s) URLs and local files are read")
        return value


class FeedsSection(_Section):
    first_run_window_days: Annotated[int, Field(ge=0, le=365_000)] = 7
    first_run_max_posts: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    timeout_s: Annotated[float, Field(gt=0, le=600)] = 20
    max_bytes: Annotated[int, Field(gt=0, le=1_000_000_000)] = 10_000_000
    fetch_post_pages: bool = True


class EditionSection(_Section):
    max_stories: Annotated[int, Field(ge=1, le=50)] = 8
    related_per_story: Annotated[int, Field(ge=0, le=10)] = 3
    translation_grace_hours: Annotated[float, Field(ge=0, le=100_000)] = 48
    require_approval: bool = False
    reviewers: list[Annotated[str, AfterValidator(_address)]] = []
    related_from_same_edition: bool = False
    utm: bool = True


class SenderSection(_Section):
    company: OneLine
    postal_address: OneLine
    contact_url: str
    logo_url: str = ""
    preferences_url: str = ""
    # Gmail's Feedback-ID SenderId: 5 to 15 letters, digits, '.', '_' or '-'; keep it stable
    feedback_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{5,15}$")] = "buzz-news"

    @field_validator("logo_url", "preferences_url")
    @classmethod
    def _optional_web(cls, value: str) -> str:
        return _http_url(value) if value else value

    @field_validator("contact_url")
    @classmethod
    def _contact_is_web(cls, value: str) -> str:
        return _http_url(value)


class AudienceSection(_Section):
    source: Literal["local", "ses"] = "local"
    contact_list: SesName = "it-buzz"
    topics: dict[Language, SesName] = {"en": "it-buzz-en", "fr": "it-buzz-fr"}
    unsubscribe_url: str = "https://example.com/unsubscribe?token={token}"
    unsubscribe_mailto: Annotated[str, AfterValidator(_address)] = ""
    ses_api_rate: Annotated[float, Field(gt=0, le=100)] = 1.0

    @field_validator("unsubscribe_url")
    @classmethod
    def _token_url(cls, value: str) -> str:
        if "{token}" not in value:
            raise ValueError("must contain the placeholder {token}")
        if not value.isascii():
            raise ValueError("must be ASCII: percent-encode other characters (%C3%A9 for é)")
        return _http_url(value)


class DeliverySection(_Section):
    transport: Literal["outbox", "ses"] = "outbox"
    region: str = "ca-central-1"
    configuration_set: str = ""
    max_send_rate: Annotated[float, Field(ge=0, le=100_000)] = 0
    workers: Annotated[int, Field(ge=1, le=128)] = 16
    # the circuit breaker: a send stops (exit 75, the rest pending) when the provider has not
    # answered a call for `breaker_quiet_s`, or when, of its last `breaker_window` calls, at
    # least `breaker_failure_ratio` were throttled, failed or lost
    breaker_quiet_s: Annotated[float, Field(gt=0, le=86_400)] = 60
    breaker_failure_ratio: Annotated[float, Field(gt=0, le=1)] = 0.9
    breaker_window: Annotated[int, Field(ge=1, le=1_000_000)] = 50


class _Document(_Section):
    newsletter: NewsletterSection = NewsletterSection()
    languages: dict[Language, LanguageSection]
    feeds: FeedsSection = FeedsSection()
    edition: EditionSection = EditionSection()
    sender: SenderSection
    audience: AudienceSection = AudienceSection()
    delivery: DeliverySection = DeliverySection()


class Settings:
    """The validated configuration, with paths resolved against the config file's folder."""

    def __init__(self, path: Path, doc: _Document) -> None:
        self.path = path
        self.base_dir = path.parent
        self.newsletter = doc.newsletter
        self.feeds = doc.feeds
        self.edition = doc.edition
        self.sender = doc.sender
        self.audience = doc.audience
        self.delivery = doc.delivery
        sections: dict[str, LanguageSection] = {str(k): v for k, v in doc.languages.items()}
        self.language_settings = {lang: sections[lang] for lang in doc.newsletter.languages}
        self.topics: dict[str, str] = {str(k): v for k, v in doc.audience.topics.items()}
        self.languages = tuple(doc.newsletter.languages)
        self.tz = ZoneInfo(doc.newsletter.timezone)
        self.output_dir = self.base_dir / doc.newsletter.output_dir
        self.state_path = self.base_dir / doc.newsletter.state

    def feed_locations(self, lang: str) -> list[str]:
        """The feeds of `lang`: URLs as written, local paths made absolute."""
        return [self._resolve_feed(feed) for feed in self.language_settings[lang].feeds]

    def _resolve_feed(self, feed: str) -> str:
        parts = urlsplit(feed)
        if parts.scheme in ("http", "https"):
            return feed
        local = Path(parts.path) if parts.scheme == "file" else Path(feed)
        return str(local if local.is_absolute() else (self.base_dir / local).resolve())

    @property
    def region(self) -> str:
        """`AWS_REGION` overrides `delivery.region`."""
        return os.environ.get("AWS_REGION") or self.delivery.region


def config_path(explicit: str | None) -> Path:
    """`--config`, else `$BUZZ_CONFIG`, else `buzz.toml` in the current folder."""
    return Path(explicit or os.environ.get("BUZZ_CONFIG") or DEFAULT_CONFIG)


def load(path: Path) -> Settings:
    """Read and validate `path`; raise ConfigError listing every problem found."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found (use --config PATH or $BUZZ_CONFIG)"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: invalid TOML: {exc}"]) from None
    problems = _missing_language_sections(path, raw) + _repeated_feeds(path, raw)
    try:
        doc = _Document.model_validate(raw)
    except ValidationError as exc:
        problems = [describe_error(path, err) for err in exc.errors()] + problems
    if problems:
        raise ConfigError(problems)
    return Settings(path.resolve(), doc)


def _repeated_feeds(path: Path, raw: dict[str, Any]) -> list[str]:
    sections = raw.get("languages", {})
    seen: dict[str, str] = {}
    problems = []
    for lang, section in sections.items() if isinstance(sections, dict) else ():
        feeds = section.get("feeds", []) if isinstance(section, dict) else []
        for feed in feeds if isinstance(feeds, list) else ():
            if feed in seen:
                problems.append(
                    f"{path}: languages.{lang}.feeds: {feed!r} is already a feed of "
                    f"languages.{seen[feed]} (a feed belongs to one language)"
                )
            seen.setdefault(feed, lang)
    return problems


def _missing_language_sections(path: Path, raw: dict[str, Any]) -> list[str]:
    newsletter = raw.get("newsletter", {})
    listed = newsletter.get("languages", ["en", "fr"]) if isinstance(newsletter, dict) else []
    sections = raw.get("languages", {})
    if not isinstance(listed, list) or not isinstance(sections, dict):
        return []  # the type error is reported by validation
    return [
        f"{path}: languages.{lang}: required section is missing (newsletter.languages lists it)"
        for lang in listed
        if lang in SUPPORTED_LANGUAGES and lang not in sections
    ]


def describe_error(path: Path, err: ErrorDetails) -> str:
    """One line for one validation problem: `file: key: problem`."""
    loc = [str(part) for part in err["loc"]]
    is_key = loc[-1:] == ["[key]"]
    key = ".".join(loc[:-1] if is_key else loc).replace("from_", "from") or "(top level)"
    kind = err["type"]
    if is_key:
        problem = f"unknown language (supported: {', '.join(SUPPORTED_LANGUAGES)})"
    elif kind == "extra_forbidden":
        problem = "unknown key"
    elif kind == "missing":
        problem = "required key is missing"
    else:
        problem = str(err["msg"]).removeprefix("Value error, ")
        if "input" in err and kind.endswith("_type"):
            problem += f" (got {type(err['input']).__name__} {err['input']!r})"
    return f"{path}: {key}: {problem}"
