"""Frozen values handed from stage to stage: posts, stories, editions, recipients."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class Post:
    """One blog post, normalised: plain-text title and summary, sanitized HTML, http(s) URLs."""

    guid: str
    lang: str
    url: str
    title: str
    summary: str
    published: datetime
    content_html: str = ""
    image: str | None = None
    categories: tuple[str, ...] = ()
    author: str = ""
    feed_url: str = ""

    def brief(self) -> dict[str, object]:
        """The POST object of `edition.json`."""
        return {
            "guid": self.guid,
            "url": self.url,
            "title": self.title,
            "published": self.published.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Related:
    """A related archive post and the score that chose it."""

    post: Post
    score: float
    reasons: tuple[str, ...] = ()

    def brief(self) -> dict[str, object]:
        """The POST object of `edition.json`, with its score and why it was chosen."""
        return {**self.post.brief(), "score": round(self.score, 4), "reasons": list(self.reasons)}


@dataclass(frozen=True, slots=True)
class Story:
    """One story of an edition: a post per language (a translation pair, or one alone)."""

    posts: dict[str, Post]
    related: dict[str, tuple[Related, ...]] = field(default_factory=dict)

    @property
    def published(self) -> datetime:
        """When the story first appeared, in any language."""
        return min(post.published for post in self.posts.values())


class EditionState(StrEnum):
    """An edition's lifecycle, as recorded in the store."""

    DRAFT = "draft"
    PROOFED = "proofed"
    SENDING = "sending"
    SENT = "sent"
    PARTIAL = "partial"


@dataclass(frozen=True, slots=True)
class Edition:
    """A composed newsletter: its stories in every configured language."""

    id: str
    created_at: datetime
    languages: tuple[str, ...]
    stories: tuple[Story, ...]
    subjects: dict[str, str] = field(default_factory=dict)  # marketing's, per language
    intros: dict[str, str] = field(default_factory=dict)

    def stories_in(self, lang: str) -> tuple[Story, ...]:
        """The stories that have a post in `lang`, in edition order."""
        return tuple(story for story in self.stories if lang in story.posts)

    def to_json(self) -> dict[str, object]:
        """The machine-readable `edition.json` document of the contract."""
        stories: list[dict[str, object]] = []
        for story in self.stories:
            doc: dict[str, object] = {lang: post.brief() for lang, post in story.posts.items()}
            doc["related"] = {
                lang: [rel.brief() for rel in picks] for lang, picks in story.related.items()
            }
            stories.append(doc)
        return {
            "id": self.id,
            "created_at": self.created_at.isoformat(),
            "languages": list(self.languages),
            "stories": stories,
        }


class DeliveryState(StrEnum):
    """A recipient's row in a send's ledger."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"
    IN_DOUBT = "in_doubt"


@dataclass(frozen=True, slots=True)
class Recipient:
    """Who receives one message, and in which language."""

    email: str
    lang: str
    name: str = ""
